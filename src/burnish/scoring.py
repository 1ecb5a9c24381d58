"""Scoring: turn a group of trajectories into rewards.

A run's reward is a weighted sum of scorers: the environment's programmatic `score` and any number
of judges. Each scorer has a role:

- `reward`: enters the reward (and so the gradient) with its weight;
- `metric`: scored and logged, never in the reward;
- `monitor`: a held-out scorer for reward-hacking detection: scored and handed to the monitors,
  never in the reward.

A scorer that cannot score a rollout returns `Score(None)`. If any `reward` scorer returns None
for a rollout, the rollout is unscorable: its total is None and it is left out of the advantage
computation (never a silent 0).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from burnish.envs.base import checked_score
from burnish.types import Group, Score, StopReason, Task, Trajectory

Role = Literal["reward", "metric", "monitor"]


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores all trajectories of one task at once (a judge, an environment)."""

    name: str

    async def score_group(self, task: Task, trajectories: Sequence[Trajectory]) -> list[Score]: ...


class EnvScorer:
    """The environment's own programmatic score as a `Scorer`.

    An episode that ended with `StopReason.ERROR` (the environment failed, or a tool raised
    `ToolInfrastructureError`) is unscorable: `Score(None)` with the error as evidence, so an infrastructure
    failure never trains the policy as if it had failed. The model's own mistakes (a malformed
    tool call, a bad argument) are not episode errors: the episode runner hands them back to the
    model as tool messages, and they are scored like any other answer.
    """

    def __init__(self, env) -> None:
        self.env = env
        self.name = "env"

    async def score_group(self, task: Task, trajectories: Sequence[Trajectory]) -> list[Score]:
        return [
            Score(None, info={"error": t.error})
            if t.stop_reason == StopReason.ERROR
            else checked_score(self.env.score(task, t), self.env, "score")
            for t in trajectories
        ]


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer of a run, with its weight and role."""

    scorer: Scorer
    weight: float = 1.0
    role: Role = "reward"

    def __post_init__(self) -> None:
        if self.role not in ("reward", "metric", "monitor"):
            raise ValueError(f"scorer role must be reward, metric or monitor, got {self.role!r}")


def combine(parts: Sequence[tuple[ScorerSpec, Score]]) -> Score:
    """Combine the scores of one rollout from several scorers into one reward.

    The total is the weighted sum of the `reward` scorers' values; None if any of them is None.
    Components keep each scorer's own components (prefixed by the scorer name, unless it is the
    environment or the component already carries the prefix) and each scorer's value under its
    name.
    """
    components: dict[str, float] = {}
    info: dict[str, object] = {}
    total: float | None = 0.0
    for spec, score in parts:
        name = spec.scorer.name
        prefix = "" if name == "env" else f"{name}/"
        for k, v in score.components.items():
            key = k if not prefix or k.startswith(prefix) else f"{prefix}{k}"
            components[key] = float(v)
        if score.value is not None and name != "env":
            components[name] = float(score.value)
        if score.info:
            info[name] = dict(score.info)
        if spec.role == "reward":
            if score.value is None or total is None:
                total = None
            else:
                total += spec.weight * float(score.value)
    return Score(value=total, components=components, info=info)


async def score_group(
    specs: Sequence[ScorerSpec], task: Task, trajectories: Sequence[Trajectory]
) -> Group:
    """Score one task's trajectories with every scorer (concurrently) into a `Group`.

    Each rollout's scores are combined into one reward (`combine`); the `monitor` scorers'
    values are kept apart as the group's held-out scores.
    """
    if not any(s.role == "reward" for s in specs):
        raise ValueError("a run needs at least one scorer with role 'reward'")
    results = await asyncio.gather(*(s.scorer.score_group(task, trajectories) for s in specs))
    for spec, res in zip(specs, results):
        if len(res) != len(trajectories):
            raise RuntimeError(
                f"scorer {spec.scorer.name!r} returned {len(res)} scores for "
                f"{len(trajectories)} trajectories"
            )
    scores = [
        combine([(spec, res[i]) for spec, res in zip(specs, results)])
        for i in range(len(trajectories))
    ]
    heldout = {
        spec.scorer.name: tuple(s.value for s in res)
        for spec, res in zip(specs, results)
        if spec.role == "monitor"
    }
    return Group(task=task, trajectories=tuple(trajectories), scores=tuple(scores), heldout=heldout)
