"""The run's reward-hacking monitor: wires `burnish.monitors.Monitor` into the training loop.

It hands the step's groups (with their held-out scores) to the monitor, runs the canary probes
against every reward scorer when they are due, and translates the monitor's advice (`on_alert`)
into what the loop does: nothing more, a checkpoint, or a stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from burnish.config import MonitorsConfig
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


class RunMonitor:
    """The monitor of one run (a no-op when `monitors.enabled` is false)."""

    def __init__(self, config: MonitorsConfig, scorers: Sequence[ScorerSpec]) -> None:
        self.enabled = config.enabled
        self.monitor = Monitor(MonitorConfig.from_mapping(config.options)) if self.enabled else None
        self.probe_scorers = {s.scorer.name: s.scorer for s in scorers if s.role == "reward"}

    async def observe(
        self, step: int, groups: Sequence[Group], train_metrics: Mapping[str, float]
    ) -> StepReport:
        if self.monitor is None or not groups:
            return StepReport()
        reports = [self.monitor.observe(step, groups, train_metrics=train_metrics)]
        if self.monitor.should_probe(step):
            task = groups[0].task
            for scorer in self.probe_scorers.values():
                reports.append(await self.monitor.run_probes(step, scorer, task))
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
