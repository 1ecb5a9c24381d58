"""The run's reward-hacking monitor: wires `burnish.monitors.Monitor` into the training loop.

It turns the loop's per-group held-out scores into the monitor's `[group][rollout]` layout, runs
the canary probes against every reward scorer when they are due, and translates the monitor's
advice (`on_alert`) into what the loop does: nothing more, a checkpoint, or a stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from burnish.config import RunConfig
from burnish.monitors import Alert, FlaggedSample, Monitor, MonitorConfig
from burnish.scoring import ScorerSpec
from burnish.types import Group


@dataclass
class StepReport:
    metrics: dict[str, float] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    flagged: list[FlaggedSample] = field(default_factory=list)
    stop: bool = False
    checkpoint: bool = False


def heldout_by_scorer(
    heldout_P: Sequence[Mapping[str, list[float | None]]],
) -> dict[str, list[list[float | None]]]:
    """[{name: scores_G} per group] -> {name: scores_P_G}."""
    names = sorted({n for h in heldout_P for n in h})
    return {n: [list(h[n]) for h in heldout_P] for n in names}


class RunMonitor:
    """The monitor of one run (a no-op when `monitors.enabled` is false)."""

    def __init__(self, config: RunConfig, scorers: Mapping[str, Sequence[ScorerSpec]]) -> None:
        self.enabled = config.monitors.enabled
        self.monitor = (
            Monitor(MonitorConfig.from_mapping(config.monitors.options)) if self.enabled else None
        )
        self.probe_scorers = {
            spec.scorer.name: spec.scorer
            for specs in scorers.values()
            for spec in specs
            if spec.role == "reward"
        }

    def observe(
        self,
        step: int,
        groups: Sequence[Group],
        heldout_P: Sequence[Mapping[str, list[float | None]]],
        train_metrics: Mapping[str, float],
    ) -> StepReport:
        if self.monitor is None or not groups:
            return StepReport()
        reports = [
            self.monitor.observe(
                step, groups, heldout=heldout_by_scorer(heldout_P), train_metrics=train_metrics
            )
        ]
        if self.monitor.should_probe(step):
            task = groups[0].task
            for scorer in self.probe_scorers.values():
                reports.append(asyncio.run(self.monitor.run_probes(step, scorer, task)))
        out = StepReport()
        for r in reports:
            out.metrics.update(r.metrics)
            out.alerts.extend(r.alerts)
            out.flagged.extend(r.flagged)
            out.stop |= r.action == "stop"
            out.checkpoint |= r.action == "checkpoint"
        return out

    def state_dict(self) -> dict[str, Any]:
        return {} if self.monitor is None else self.monitor.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.monitor is not None and state:
            self.monitor.load_state_dict(state)
