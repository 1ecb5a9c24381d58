"""Re-score stored rollouts with another rubric or judge and report what moves.

The core works on plain rollout dicts as the run store returns them (keys id, step, env,
task_id, group, prompt, completion, reward, components, stop_reason, task_info), so it can be
tested without a store. Rollouts are re-scored per stored group (step, task_id, group), which
is what a group judge needs and what GRPO advantages are computed over.

Besides reward changes it reports the rollouts whose group-centred advantage changes sign: a
new judge that keeps mean reward but reorders rollouts within groups changes training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from burnish.judges.calibrate import spearman
from burnish.judges.core import TextScorer
from burnish.types import Message, Task


@dataclass(frozen=True)
class ReplayRow:
    """One re-scored rollout."""

    id: Any
    step: int
    task_id: str
    group: Any
    old: float | None
    new: float | None
    old_advantage: float | None
    new_advantage: float | None
    completion: str

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


@dataclass(frozen=True)
class ReplayReport:
    """Old vs new rewards of every rollout, with summary statistics."""

    rows: tuple[ReplayRow, ...]
    n_groups: int

    @property
    def both(self) -> list[ReplayRow]:
        return [r for r in self.rows if r.delta is not None]

    def summary(self, tol: float = 1e-9) -> dict[str, float]:
        both = self.both
        olds, news = [r.old for r in both], [r.new for r in both]
        sign_flips = sum(
            r.old_advantage is not None and r.new_advantage is not None
            and (r.old_advantage > tol and r.new_advantage < -tol
                 or r.old_advantage < -tol and r.new_advantage > tol)
            for r in self.rows
        )  # fmt: skip
        nan = float("nan")
        return {
            "rollouts": float(len(self.rows)),
            "groups": float(self.n_groups),
            "compared": float(len(both)),
            "changed": float(sum(abs(r.delta) > tol for r in both)),  # type: ignore[arg-type]
            "new_unscorable": float(sum(r.new is None for r in self.rows)),
            "mean_old": sum(olds) / len(olds) if olds else nan,  # type: ignore[arg-type]
            "mean_new": sum(news) / len(news) if news else nan,  # type: ignore[arg-type]
            "mean_abs_delta": sum(abs(r.delta) for r in both) / len(both) if both else nan,  # type: ignore[arg-type]
            "spearman_old_new": spearman(olds, news) if len(both) >= 2 else nan,  # type: ignore[arg-type]
            "advantage_sign_flips": float(sign_flips),
        }

    def top_movers(self, k: int = 10) -> list[ReplayRow]:
        """The k rollouts whose reward moved most (by |new - old|)."""
        return sorted(self.both, key=lambda r: abs(r.delta), reverse=True)[:k]  # type: ignore[arg-type]


def centred(values_G: Sequence[float | None]) -> list[float | None]:
    """Group-centred values (reward - mean of the group's scored rewards); None stays None."""
    ok = [v for v in values_G if v is not None]
    if not ok:
        return [None] * len(values_G)
    mean = sum(ok) / len(ok)
    return [None if v is None else v - mean for v in values_G]


def task_from_row(row: Mapping[str, Any]) -> Task:
    """The task of a stored rollout: its prompt as one user message, and its task info."""
    info = dict(row.get("task_info") or {})
    return Task(
        id=str(row.get("task_id", "")),
        prompt=(Message("user", str(row.get("prompt", ""))),),
        answer=info.get("answer"),
        env=str(row.get("env", "")),
        info=info,
    )


def group_rows(rows: Sequence[Mapping[str, Any]]) -> dict[tuple, list[Mapping[str, Any]]]:
    """Rollouts grouped by (step, task_id, group), in first-seen order."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row.get("step"), row.get("task_id"), row.get("group")), []).append(row)
    return groups


async def replay(rows: Sequence[Mapping[str, Any]], judge: TextScorer) -> ReplayReport:
    """Re-score every stored rollout with `judge`, group by group."""
    out: list[ReplayRow] = []
    groups = group_rows(rows)
    for (step, task_id, group), members in groups.items():
        task = task_from_row(members[0])
        scores = await judge.score_candidates(task, [str(r.get("completion", "")) for r in members])
        olds = [r.get("reward") for r in members]
        news = [s.value for s in scores]
        for r, old, new, a_old, a_new in zip(
            members, olds, news, centred(olds), centred(news), strict=True
        ):
            out.append(ReplayRow(r.get("id"), int(step or 0), str(task_id), group, old, new,
                                 a_old, a_new, str(r.get("completion", ""))))  # fmt: skip
    return ReplayReport(tuple(out), len(groups))
