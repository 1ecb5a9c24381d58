"""What the monitor hands to the trainer and the run store: alerts, flagged samples, a report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    """One rule that fired at one step."""

    rule: str
    """"zscore", "cusum", "train_up_heldout_flat", "reward_with_exploit" or "canary_probe"."""
    step: int
    signal: str
    """The signal (or probe name) the rule looked at."""
    value: float
    """The signal's value (or the detector statistic) that crossed the threshold."""
    threshold: float
    evidence: str
    """One or two sentences a person can read in a log."""
    rollouts: tuple[tuple[int, int], ...] = ()
    """Example rollouts of this step as (group index, rollout index)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rollouts"] = [list(r) for r in self.rollouts]
        return d


@dataclass(frozen=True)
class FlaggedSample:
    """A rollout worth a person's look: among the step's top rewards or its most flagged."""

    step: int
    group_index: int
    rollout_index: int
    task_id: str
    reward: float | None
    flags: Mapping[str, float]
    """Per-rollout signals that fired, with their values (e.g. {"injection": 2, "hedging": 3})."""
    reasons: tuple[str, ...]
    """Why it was kept: "top_reward" and/or "flagged"."""
    excerpt: str
    """The start of the completion text."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags"] = dict(self.flags)
        d["reasons"] = list(self.reasons)
        return d


@dataclass(frozen=True)
class MonitorReport:
    """The monitor's output for one step (or one probe run)."""

    step: int
    metrics: Mapping[str, float]
    """`monitor/<signal>` -> value; signals undefined this step are left out, never reported as 0."""
    alerts: tuple[Alert, ...] = ()
    flagged: tuple[FlaggedSample, ...] = ()
    action: str | None = None
    """`MonitorConfig.on_alert` when any alert fired ("log", "checkpoint", "stop"), else None."""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Extra per-step evidence (e.g. every probe's score)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "metrics": dict(self.metrics),
            "alerts": [a.to_dict() for a in self.alerts],
            "flagged": [f.to_dict() for f in self.flagged],
            "action": self.action,
            "details": dict(self.details),
        }
