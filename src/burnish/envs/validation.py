"""`validate_env`: check an environment's splits and that every gold answer earns the maximum."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Any

from burnish.envs.base import SPLITS


@dataclass(frozen=True)
class ValidationFailure:
    """One task whose check failed."""

    split: str
    task_id: str
    message: str


@dataclass(frozen=True)
class ValidationReport:
    """What `validate_env` checked and what failed."""

    env: str
    checked: dict[str, int]
    """Tasks checked per split."""
    failures: tuple[ValidationFailure, ...]
    check: str = "every gold answer earns the maximum reward"
    """What each task's check established (an environment's `validation_check`)."""

    @property
    def ok(self) -> bool:
        return not self.failures


def validate_env(env: Any, n: int = 200, seed: int = 0) -> ValidationReport:
    """Run `env.validate` on the first `n` tasks of each split and check the splits are disjoint.

    A failing task is recorded (with the exception's message) and the check goes on; an
    exception from `tasks` itself propagates.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    failures: list[ValidationFailure] = []
    checked: dict[str, int] = {}
    prompts: dict[str, set[tuple]] = {}
    for split in SPLITS:
        tasks = list(islice(env.tasks(split, seed), n))
        checked[split] = len(tasks)
        prompts[split] = {tuple((m.role, m.content) for m in t.prompt) for t in tasks}
        for task in tasks:
            try:
                env.validate(task)
            except Exception as e:  # recorded per task: the report names every failing task
                failures.append(ValidationFailure(split, task.id, f"{type(e).__name__}: {e}"))
    for shared in prompts["train"] & prompts["test"]:
        failures.append(ValidationFailure("test", str(shared), "prompt also appears in train"))
    check = getattr(env, "validation_check", ValidationReport.check)
    return ValidationReport(getattr(env, "name", "?"), checked, tuple(failures), check)
