"""`reasoning-gym/TASK`: every procedural generator of reasoning-gym as a single-turn environment.

Prompt: the generator's question as the user turn (with `system_prompt` before it when set).
Reward: the generator's own `score_answer(reply, entry)`, in [0, 1] (1.0 for the gold answer;
many generators give partial credit). Components: `score` (that value) and `correct` (1 when it
is 1.0). The reply is scored as it is (stripped); with `answer_tag=True` the prompt asks for
`<answer>...</answer>` (reasoning-gym's `default` system prompt) and the last such block is
scored (a reply without one scores 0), the convention of reasoning-gym's own evaluations.

Splits: train items come from one range of generator seeds and test items from a disjoint one
(a generator's item `i` is drawn from `Random(config.seed + i)`), and an item is kept only when
a stable hash of its question puts it in that split (`split_of`, `test_fraction` of the
questions are test questions), so no question is in both splits even for generators with few
distinct questions. Repeated questions within a split are skipped; a generator whose question
space runs out ends its stream.

Any field of the generator's config (`min_digits`, `max_terms`, ...) is a keyword argument;
`seed` and `size` are burnish's. `validate` checks that the gold answer scores 1.0; a generator
without a gold answer (its scorer checks any valid solution: boxnet, rush_hour, ...) cannot be
validated that way and fails validation saying so.

How it departs from reasoning-gym: no curriculum, `composite` is left to `[[env.mix]]` (it
still loads with its `datasets` argument).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from burnish.envs.base import EnvValidationError, SingleTurnEnv, check_split, split_of
from burnish.seeds import seeded_rng
from burnish.types import Message, Score, Task

IMPORT_NAME = "reasoning_gym"
PREFIX = "reasoning-gym"
SPLIT_SEEDS = {"train": 0, "test": 2**31}
"""First generator seed of each split; each split draws from the next 2**31 seeds."""
CHUNK = 64
"""Items per generator instance (some generators precompute per instance)."""
MAX_MISSES = 500
"""Consecutive items that gave nothing new (repeat or other split) before the stream ends."""


def _registry() -> dict[str, tuple[type, type]]:
    from reasoning_gym.factory import DATASETS

    return DATASETS


def task_names() -> list[str]:
    return sorted(_registry())


def summary() -> str:
    return f"{len(_registry())} procedural generators (reasoning-gym/<generator>)"


def config_fields(task: str) -> list[str]:
    """The generator's config fields a run may set (all but `seed` and `size`)."""
    config_cls = _registry()[task][1]
    return [f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")]


def factory(task: str) -> Callable[..., ReasoningGymEnv]:
    """`ReasoningGymEnv` for `task`, with a signature that names the generator's config fields
    (so a misspelt field is refused at config load with the fields it takes)."""
    build = functools.partial(ReasoningGymEnv, task)
    own = [
        p
        for n, p in inspect.signature(ReasoningGymEnv).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    fields = [inspect.Parameter(f, inspect.Parameter.KEYWORD_ONLY) for f in config_fields(task)]
    build.__signature__ = inspect.Signature(own + fields)  # type: ignore[attr-defined]
    return build


class ReasoningGymEnv(SingleTurnEnv):
    """One reasoning-gym generator; see the module docstring."""

    def __init__(
        self,
        task: str,
        *,
        system_prompt: str | None = None,
        answer_tag: bool = False,
        test_fraction: float = 0.2,
        **config: Any,
    ) -> None:
        super().__init__()
        registry = _registry()
        if task not in registry:
            raise ValueError(f"reasoning-gym has no generator {task!r}")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if clash := sorted({"seed", "size"} & set(config)):
            raise ValueError(f"{PREFIX}/{task}: {clash} are set by burnish (splits and seeds)")
        self.task, self.name = task, f"{PREFIX}/{task}"
        self.config = dict(config)
        self.answer_tag, self.test_fraction = answer_tag, test_fraction
        if answer_tag and system_prompt is None:
            from reasoning_gym.utils import SYSTEM_PROMPTS

            system_prompt = SYSTEM_PROMPTS["default"]
        self.system_prompt = system_prompt
        self._scorer = self._dataset(0, 1)  # also checks the config now, not at the first task

    def _dataset(self, seed: int, size: int) -> Any:
        dataset_cls, config_cls = _registry()[self.task]
        data = self.config
        if self.task == "composite" and "datasets" in data:  # its specs arrive as tables
            from reasoning_gym.composite import DatasetSpec

            data = {**data, "datasets": [DatasetSpec(**d) for d in data["datasets"]]}
        try:
            config = config_cls(**data, seed=seed, size=size)
            return dataset_cls(config=config)
        except (TypeError, ValueError, AssertionError) as e:  # the generator's own checks
            raise ValueError(f"{self.name}: invalid generator config {self.config}: {e}") from e

    def _items(self, split: str, seed: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """(generator seed, item) of one split's seed range, from a seed-chosen offset."""
        offset = seeded_rng(PREFIX, self.task, split, seed).randrange(2**30)
        for chunk in itertools.count():
            first = SPLIT_SEEDS[split] + offset + chunk * CHUNK
            dataset = self._dataset(first, CHUNK)
            for i in range(CHUNK):
                yield first + i, dataset[i]

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        check_split(split)
        seen: set[str] = set()
        misses = 0
        for item_seed, entry in self._items(split, seed):
            question = entry["question"]
            key = f"{self.name}/{question}"
            if question in seen or split_of(key, self.test_fraction) != split:
                misses += 1
                if misses >= MAX_MISSES:
                    return
                continue
            misses = 0
            seen.add(question)
            prompt = (Message("user", question),)
            if self.system_prompt:
                prompt = (Message("system", self.system_prompt), *prompt)
            info = {"item_seed": item_seed, "metadata": entry.get("metadata", {})}
            yield Task(f"{split}-{item_seed}", prompt, entry["answer"], self.name, info)

    def _entry(self, task: Task) -> dict[str, Any]:
        question = task.prompt[-1].content
        return {"question": question, "answer": task.answer, "metadata": task.info["metadata"]}

    def score_answer(self, task: Task, answer: str) -> Score:
        if self.answer_tag:
            from reasoning_gym.utils import extract_answer

            reply = extract_answer(answer)
        else:
            reply = answer.strip()
        value = 0.0 if reply is None else float(self._scorer.score_answer(reply, self._entry(task)))
        return Score(value, {"score": value, "correct": float(value >= 1.0)})

    def gold_answer(self, task: Task) -> str:
        if task.answer is None:
            raise EnvValidationError(
                f"{self.name} task {task.id!r} has no gold answer (its scorer checks any valid "
                "solution), so its scorer cannot be validated against one"
            )
        answer = str(task.answer)
        return f"<answer>{answer}</answer>" if self.answer_tag else answer
