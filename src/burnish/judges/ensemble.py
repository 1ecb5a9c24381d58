"""Ensembles of judges: mean, worst case (min) or uncertainty-weighted (mean - lambda * std).

Following Coste et al. (2023, "Reward Model Ensembles Help Mitigate Overoptimization"), with
LLM judges as members. The member spread (population std, ddof=0) is recorded per rollout as
`judge/disagreement`: a rising share of high-disagreement rollouts is an early hacking flag.
A rollout is unscorable when fewer than `min_members` members scored it (default: all).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

from burnish.judges.core import Scorer
from burnish.types import Score, Task, Trajectory


def _mean(values_M: Sequence[float], lam: float) -> float:
    return sum(values_M) / len(values_M)


def _std(values_M: Sequence[float]) -> float:
    m = _mean(values_M, 0.0)
    return math.sqrt(sum((v - m) ** 2 for v in values_M) / len(values_M))


AGGREGATES: dict[str, Callable[[Sequence[float], float], float]] = {
    "mean": _mean,
    "min": lambda values_M, lam: min(values_M),
    "mean_minus_std": lambda values_M, lam: _mean(values_M, lam) - lam * _std(values_M),
}
"""Ensemble aggregations over the member values of one rollout (`lam` used by mean_minus_std)."""


class EnsembleJudge:
    """Runs member scorers concurrently and aggregates their values per rollout.

    Args:
        members: scorers with distinct names (mix model families: shared bases share errors).
        aggregate: one of `AGGREGATES`.
        lam: the lambda of "mean_minus_std".
        min_members: members that must have scored a rollout (default: all of them).
        name: scorer name.
    """

    def __init__(
        self,
        members: Sequence[Scorer],
        aggregate: str = "mean",
        *,
        lam: float = 1.0,
        min_members: int | None = None,
        name: str = "ensemble",
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"ensemble member names must be distinct, got {names}")
        if aggregate not in AGGREGATES:
            raise ValueError(
                f"unknown ensemble aggregate {aggregate!r}; allowed: {sorted(AGGREGATES)}"
            )
        self.members = list(members)
        self.aggregate = aggregate
        self.lam = lam
        self.min_members = len(members) if min_members is None else min_members
        if not 1 <= self.min_members <= len(members):
            raise ValueError(f"min_members must be in [1, {len(members)}], got {min_members}")
        self.name = name

    async def score_group(self, task: Task, trajectories: Sequence[Trajectory]) -> list[Score]:
        per_member = await asyncio.gather(
            *(m.score_group(task, trajectories) for m in self.members)
        )
        return self.combine(per_member)

    async def score_candidates(self, task: Task, candidates: Sequence[str]) -> list[Score]:
        per_member = await asyncio.gather(
            *(m.score_candidates(task, candidates) for m in self.members)  # type: ignore[attr-defined]
        )
        return self.combine(per_member)

    def combine(self, scores_M_N: Sequence[Sequence[Score]]) -> list[Score]:
        """Aggregate member scores [M][N] into one score per rollout [N]."""
        out = []
        for scores_M in zip(*scores_M_N, strict=True):
            values = {m.name: s.value for m, s in zip(self.members, scores_M, strict=True)}
            ok = [v for v in values.values() if v is not None]
            info = {"judge": self.name, "aggregate": self.aggregate,
                    "members": {m.name: dict(s.info) for m, s in zip(self.members, scores_M, strict=True)}}  # fmt: skip
            if len(ok) < self.min_members:
                missing = [n for n, v in values.items() if v is None]
                out.append(
                    Score(None, {}, {**info, "error": f"members without a score: {missing}"})
                )
                continue
            spread = _std(ok)
            components = {f"{n}/value": v for n, v in values.items() if v is not None}
            components["judge/disagreement"] = spread
            out.append(Score(AGGREGATES[self.aggregate](ok, self.lam), components,
                             {**info, "disagreement": spread}))  # fmt: skip
        return out

    def metrics(self) -> dict[str, float]:
        """Member metrics prefixed by member name, plus summed calls/tokens/cost."""
        out: dict[str, float] = {}
        for m in self.members:
            for k, v in getattr(m, "metrics", dict)().items():
                out[f"{m.name}/{k}"] = v
                if k in ("judge/calls", "judge/tokens", "judge/cost_usd"):
                    out[k] = out.get(k, 0.0) + v
        return out

    def reset_metrics(self) -> None:
        for m in self.members:
            if hasattr(m, "reset_metrics"):
                m.reset_metrics()
