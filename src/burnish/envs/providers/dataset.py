"""`dataset/PATH`: a local question/answer file as a single-turn environment.

The file (`.json`, `.jsonl`, `.csv` or `.parquet`) is read with `datasets` (its JSON, CSV and
Parquet readers: data only, nothing is unpickled or executed); `PATH` is relative to the current
directory or absolute (`dataset//data/qa.jsonl`). Each row is a task: its `question` column
(kwarg `question`) is the user turn (after `system`, when set), its `answer` column (kwarg
`answer`) the gold answer, and a named scorer compares the reply with it:

- `exact`: the stripped reply equals the stripped answer;
- `numeric`: the stripped reply is a number within `rel_tol` (default 1e-6) of the answer;
- `regex`: `pattern` is searched in the reply, and its first group (the whole match when it has
  none) must equal the answer; a reply it does not match scores 0.

Reward 1 or 0. Components: `correct` and `format` (the reply parses as a number / matches the
pattern; always 1 for `exact`). `validate` replies with the gold answer written as
`gold_format` (default `{answer}`; e.g. `answer: {answer}` for a pattern that reads that).
Splits: a `split` column (kwarg `split_column`) with values
`train` / `test` when the file has one, else a stable hash of the question (`test_fraction`
of the questions are test questions), so a question is never in both splits. Each split is
shuffled by the seed.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from burnish.envs.base import SingleTurnEnv, check_split, split_of
from burnish.envs.registry import UnknownEnvironmentError
from burnish.seeds import seeded_rng
from burnish.types import Message, Score, Task

IMPORT_NAME = "datasets"
PREFIX = "dataset"
READERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def task_names() -> None:
    return None  # any local file


def summary() -> str:
    return f"any local {'/'.join(sorted(READERS))} file (dataset/<path>)"


def factory(task: str) -> Callable[..., DatasetEnv]:
    path = Path(task)
    if not path.is_file():
        raise UnknownEnvironmentError(f"environment {PREFIX + '/' + task!r}: no file {task!r}")
    if path.suffix.lower() not in READERS:
        raise UnknownEnvironmentError(
            f"environment {PREFIX + '/' + task!r}: cannot read {path.suffix!r} files; "
            f"readable: {', '.join(READERS)}"
        )
    return functools.partial(DatasetEnv, task)


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def exact(reply: str, gold: Any, env: DatasetEnv) -> tuple[float, float]:
    return float(reply.strip() == str(gold).strip()), 1.0


def numeric(reply: str, gold: Any, env: DatasetEnv) -> tuple[float, float]:
    value, target = _number(reply), _number(str(gold))
    if target is None:
        raise ValueError(f"{env.name}: gold answer {gold!r} is not a number (scorer 'numeric')")
    if value is None:
        return 0.0, 0.0
    return float(math.isclose(value, target, rel_tol=env.rel_tol, abs_tol=1e-12)), 1.0


def regex(reply: str, gold: Any, env: DatasetEnv) -> tuple[float, float]:
    assert env.pattern is not None, "the regex scorer needs a pattern"
    m = env.pattern.search(reply)
    if m is None:
        return 0.0, 0.0
    found = m.group(1) if env.pattern.groups else m.group(0)
    return float((found or "").strip() == str(gold).strip()), 1.0


SCORERS: dict[str, Callable[[str, Any, DatasetEnv], tuple[float, float]]] = {
    "exact": exact,
    "numeric": numeric,
    "regex": regex,
}
"""Scorer name -> (reply, gold answer, env) -> (correct, format)."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSON/JSONL/CSV/Parquet file, through `datasets`' data readers."""
    from datasets import load_dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    data = load_dataset(READERS[path.suffix.lower()], data_files=str(path), split="train")
    return data.to_list()


class DatasetEnv(SingleTurnEnv):
    """The rows of one local file; see the module docstring."""

    def __init__(
        self,
        path: str,
        *,
        question: str = "question",
        answer: str = "answer",
        scorer: str = "exact",
        pattern: str | None = None,
        rel_tol: float = 1e-6,
        system: str | None = None,
        split_column: str = "split",
        test_fraction: float = 0.1,
        gold_format: str = "{answer}",
    ) -> None:
        super().__init__()
        self.name = f"{PREFIX}/{path}"
        if scorer not in SCORERS:
            raise ValueError(
                f"{self.name}: unknown scorer {scorer!r}; allowed: {', '.join(SCORERS)}"
            )
        if (scorer == "regex") != (pattern is not None):
            raise ValueError(f"{self.name}: `pattern` is needed by, and only by, scorer 'regex'")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if "{answer}" not in gold_format:
            raise ValueError(
                f"{self.name}: gold_format must hold '{{answer}}', got {gold_format!r}"
            )
        self.scorer, self.rel_tol, self.system = scorer, rel_tol, system
        self.gold_format = gold_format
        self.pattern = re.compile(pattern) if pattern is not None else None
        rows = read_rows(Path(path))
        self.splits = _split_rows(self.name, rows, question, answer, split_column, test_fraction)

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        check_split(split)
        rows = list(self.splits[split])
        seeded_rng(self.name, split, seed).shuffle(rows)
        for index, text, gold in rows:
            prompt = (Message("user", text),)
            if self.system:
                prompt = (Message("system", self.system), *prompt)
            yield Task(f"{split}-{index}", prompt, gold, self.name, {"row": index})

    def score_answer(self, task: Task, answer: str) -> Score:
        correct, fmt = SCORERS[self.scorer](answer, task.answer, self)
        return Score(correct, {"correct": correct, "format": fmt})

    def gold_answer(self, task: Task) -> str:
        return self.gold_format.replace("{answer}", str(task.answer))


def _split_rows(
    name: str,
    rows: list[dict[str, Any]],
    question: str,
    answer: str,
    split_column: str,
    test_fraction: float,
) -> dict[str, list[tuple[int, str, Any]]]:
    """(row index, question, answer) of each split."""
    if not rows:
        raise ValueError(f"{name}: the file has no rows")
    columns = list(rows[0])
    for column in (question, answer):
        if column not in columns:
            raise ValueError(f"{name}: no column {column!r}; columns: {', '.join(columns)}")
    out: dict[str, list[tuple[int, str, Any]]] = {"train": [], "test": []}
    for i, row in enumerate(rows):
        text = row[question]
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name}: row {i}: column {question!r} is not a non-empty string")
        if split_column in columns:
            split = row[split_column]
            if split not in out:
                raise ValueError(f"{name}: row {i}: {split_column}={split!r}, not train or test")
        else:
            split = split_of(f"{name}/{text}", test_fraction)
        out[split].append((i, text, row[answer]))
    return out
