"""Rubric files: criteria with weights, categories and choices ordered worst to best.

A rubric is a TOML file::

    name = "keywords"
    description = "A short text that uses the given words."
    task_info = ["keywords"]          # Task.info keys shown to the judge in the TASK section

    [[criteria]]
    name = "uses_all_keywords"
    description = "Every required keyword appears, used naturally."
    choices = ["none", "some", "all"]  # worst -> best
    category = "essential"            # essential | important | optional | pitfall
    weight = 3.0                       # optional; defaults by category (CATEGORY_WEIGHTS)

Aggregation (RaR "explicit" aggregation, with one departure for pitfalls): a verdict maps to
its rank, `v = index / (len(choices) - 1)` in [0, 1]. With `P` the non-pitfall criteria and
`F` the pitfall criteria (whose choices are also ordered worst -> best, i.e. "pitfall present"
first)::

    reward = (sum_{c in P} w_c * v_c  -  sum_{c in F} w_c * (1 - v_c)) / sum_{c in P} w_c

so a rollout with every criterion met and no pitfall scores 1, and each pitfall that is present
subtracts its weight share. The reward is not floored at 0: a rollout that hits pitfalls can go
negative, which keeps the ordering between bad rollouts (RaR uses a negative weight instead).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Category(str, Enum):
    """RaR criterion categories."""

    ESSENTIAL = "essential"
    """Must hold for a good answer."""
    IMPORTANT = "important"
    """Strongly expected."""
    OPTIONAL = "optional"
    """Nice to have."""
    PITFALL = "pitfall"
    """A failure mode; its weight is subtracted when present."""


CATEGORY_WEIGHTS: dict[Category, float] = {
    Category.ESSENTIAL: 3.0,
    Category.IMPORTANT: 2.0,
    Category.OPTIONAL: 1.0,
    Category.PITFALL: 2.0,
}
"""Default weight of a criterion that gives none."""


class RubricError(ValueError):
    """A rubric file or table is invalid; the message names the criterion and the rule."""


@dataclass(frozen=True)
class Criterion:
    """One rubric item."""

    name: str
    description: str
    choices: tuple[str, ...]
    """Allowed verdicts, ordered worst -> best (the first maps to 0.0, the last to 1.0)."""
    category: Category = Category.IMPORTANT
    weight: float = 2.0

    def value(self, verdict: str) -> float:
        """Map a verdict to [0, 1] by its rank among the choices."""
        if verdict not in self.choices:
            raise RubricError(
                f"criterion {self.name!r}: verdict {verdict!r} is not one of {list(self.choices)}"
            )
        return self.choices.index(verdict) / (len(self.choices) - 1)


@dataclass(frozen=True)
class Rubric:
    """A validated rubric; `version` is a hash of its content (not of the file's bytes)."""

    name: str
    criteria: tuple[Criterion, ...]
    description: str = ""
    task_info: tuple[str, ...] = ()
    """Keys of `Task.info` rendered into the judge's TASK section."""
    version: str = ""

    def criterion(self, name: str) -> Criterion:
        for c in self.criteria:
            if c.name == name:
                return c
        raise KeyError(f"rubric {self.name!r} has no criterion {name!r}")

    def aggregate(self, verdicts: Mapping[str, str]) -> tuple[float, dict[str, float]]:
        """Reward and per-criterion values for one complete set of verdicts (see module doc)."""
        values = {c.name: c.value(verdicts[c.name]) for c in self.criteria}
        return aggregate_values(self, values), values


def aggregate_values(rubric: Rubric, values: Mapping[str, float]) -> float:
    """The weighted reward from per-criterion values in [0, 1] (formula in the module doc)."""
    positive = [c for c in rubric.criteria if c.category != Category.PITFALL]
    pitfalls = [c for c in rubric.criteria if c.category == Category.PITFALL]
    total = sum(c.weight for c in positive)
    gained = sum(c.weight * values[c.name] for c in positive)
    lost = sum(c.weight * (1.0 - values[c.name]) for c in pitfalls)
    return (gained - lost) / total


def _criterion(raw: Any, index: int) -> Criterion:
    if not isinstance(raw, Mapping):
        raise RubricError(f"criteria[{index}] must be a table, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or any(ch.isspace() for ch in name):
        raise RubricError(f"criteria[{index}]: name must be a non-empty word, got {name!r}")
    unknown = set(raw) - {"name", "description", "choices", "category", "weight"}
    if unknown:
        raise RubricError(f"criterion {name!r}: unknown fields {sorted(unknown)}")
    description = raw.get("description", "")
    if not isinstance(description, str) or not description.strip():
        raise RubricError(f"criterion {name!r}: description must be a non-empty string")
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise RubricError(f"criterion {name!r}: choices must be a non-empty list (worst -> best)")
    if len(choices) < 2 or not all(isinstance(x, str) and x.strip() for x in choices):
        raise RubricError(
            f"criterion {name!r}: choices must be at least 2 non-empty strings, got {choices!r}"
        )
    if len(set(choices)) != len(choices):
        raise RubricError(f"criterion {name!r}: duplicate choices in {choices!r}")
    allowed = [c.value for c in Category]
    category_raw = raw.get("category", Category.IMPORTANT.value)
    if category_raw not in allowed:
        raise RubricError(
            f"criterion {name!r}: unknown category {category_raw!r}; allowed: {allowed}"
        )
    category = Category(category_raw)
    weight = raw.get("weight", CATEGORY_WEIGHTS[category])
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise RubricError(f"criterion {name!r}: weight must be a positive number, got {weight!r}")
    return Criterion(name, description.strip(), tuple(choices), category, float(weight))


def parse_rubric(data: Mapping[str, Any], source: str = "<rubric>") -> Rubric:
    """Validate a rubric table (as read from TOML) and compute its version.

    Raises:
        RubricError: naming the source and the criterion for duplicate names, empty or
            repeated choices, unknown categories, non-positive weights, or a non-positive
            total weight of the non-pitfall criteria.
    """
    raw_criteria = data.get("criteria")
    if not isinstance(raw_criteria, list) or not raw_criteria:
        raise RubricError(f"{source}: needs a non-empty [[criteria]] list")
    unknown = set(data) - {"name", "description", "task_info", "criteria"}
    if unknown:
        raise RubricError(f"{source}: unknown top-level fields {sorted(unknown)}")
    try:
        criteria = tuple(_criterion(raw, i) for i, raw in enumerate(raw_criteria))
    except RubricError as e:
        raise RubricError(f"{source}: {e}") from None
    seen: set[str] = set()
    for c in criteria:
        if c.name in seen:
            raise RubricError(f"{source}: duplicate criterion name {c.name!r}")
        seen.add(c.name)
    total = sum(c.weight for c in criteria if c.category != Category.PITFALL)
    if not total > 0:
        raise RubricError(
            f"{source}: total weight of non-pitfall criteria must be positive, got {total} "
            "(a rubric of only pitfalls has nothing to reward)"
        )
    task_info = data.get("task_info", [])
    if not isinstance(task_info, list) or not all(isinstance(k, str) for k in task_info):
        raise RubricError(
            f"{source}: task_info must be a list of Task.info keys, got {task_info!r}"
        )
    name = str(data.get("name", Path(source).stem))
    rubric = Rubric(name, criteria, str(data.get("description", "")).strip(), tuple(task_info))
    return Rubric(rubric.name, criteria, rubric.description, rubric.task_info, _version(rubric))


def _version(rubric: Rubric) -> str:
    content = {
        "description": rubric.description,
        "task_info": list(rubric.task_info),
        "criteria": [
            [c.name, c.description, list(c.choices), c.category.value, c.weight]
            for c in rubric.criteria
        ],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def load_rubric(path: str | Path) -> Rubric:
    """Load and validate a rubric TOML file (see the module doc for the format)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise RubricError(f"{path}: not valid TOML: {e}") from None
    return parse_rubric(data, str(path))


BUILTIN_RUBRICS = Path(__file__).parent / "rubrics"


def builtin_rubric(name: str) -> Rubric:
    """A rubric shipped with burnish (e.g. "keywords" for the `keywords` environment)."""
    path = BUILTIN_RUBRICS / f"{name}.toml"
    if not path.exists():
        names = sorted(p.stem for p in BUILTIN_RUBRICS.glob("*.toml"))
        raise RubricError(f"no built-in rubric {name!r}; available: {names}")
    return load_rubric(path)
