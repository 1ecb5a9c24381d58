"""Reward-hacking and drift monitors.

Signals are pure functions over strings and numbers (`text`, `stats`); `Monitor` turns a step's
groups into `monitor/*` metrics, alerts (per-signal z-score and CUSUM detectors plus the two
composite rules) and flagged samples, and scores canary probes with the live scorer. Monitors
never change rewards.
"""

from burnish.monitors.config import DEFAULT_WATCHED, SIGNALS, MonitorConfig
from burnish.monitors.detectors import Cusum, Detection, RollingZScore
from burnish.monitors.monitor import HeldOut, Monitor
from burnish.monitors.probes import CANARY_ANSWERS, GroupScorer, ProbeResult, score_probes
from burnish.monitors.records import Alert, FlaggedSample, MonitorReport
from burnish.monitors.text import ANSWER_PATTERN, INJECTION_PATTERNS

__all__ = [
    "ANSWER_PATTERN",
    "CANARY_ANSWERS",
    "DEFAULT_WATCHED",
    "INJECTION_PATTERNS",
    "SIGNALS",
    "Alert",
    "Cusum",
    "Detection",
    "FlaggedSample",
    "GroupScorer",
    "HeldOut",
    "Monitor",
    "MonitorConfig",
    "MonitorReport",
    "ProbeResult",
    "RollingZScore",
    "score_probes",
]
