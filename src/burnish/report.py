"""The run report: one self-contained HTML file read from the run store.

`write_report(run_dir)` writes `report.html`: plots embedded as inline SVG (the file can be sent
on its own), in sections: learning, policy health, reward-hacking monitors, judges and their cost,
throughput, forgetting (when the store holds evaluations of environments the run did not train
on) and a rollout browser. The trainer regenerates it at the end of every run, resumed runs too;
`burnish report RUN_DIR` writes it again at any time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burnish.report_html import page, rollout_browser, section
from burnish.report_panels import (
    forgetting_section,
    health_section,
    judges_section,
    learning_section,
    monitors_section,
    throughput_section,
)
from burnish.report_plots import series  # noqa: F401  (re-exported)
from burnish.run_views import best_and_worst, monitor_flagged
from burnish.store import RunStore
from burnish.train.forgetting import KL_ROW, RETENTION_PREFIX

BROWSE_K = 5
"""Best and worst rollouts of the last step shown in the rollout browser."""
FLAGGED_SHOWN = 60
"""Most monitor-flagged samples listed in the rollout browser (the latest first)."""


@dataclass
class RunData:
    """What the report reads from a run directory."""

    run_dir: Path
    steps: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    trained_envs: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    best: list[dict[str, Any]] = field(default_factory=list)
    worst: list[dict[str, Any]] = field(default_factory=list)
    flagged: list[dict[str, Any]] = field(default_factory=list)
    """Monitor-flagged rollouts (rollout rows plus `flags`), the latest first."""
    retention: list[dict[str, Any]] = field(default_factory=list)
    """`eval.retention` measurements as eval rows (`env`, `step`, `pass@1`, ...)."""
    kl_to_base: list[dict[str, Any]] = field(default_factory=list)
    """KL to the base policy at each eval point (`step`, `forward`, `reverse`)."""


def load_run(run_dir: str | Path) -> RunData:
    """Read everything the report shows from a run directory."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    try:
        steps = store.steps()
        data = RunData(run_dir, steps, store.evals(), store.alerts(), store.rollout_envs())
        if steps:
            data.best, data.worst = best_and_worst(store.rollouts(steps[-1]["step"]), BROWSE_K)
        data.flagged = monitor_flagged(store, FLAGGED_SHOWN)
        for row in store.forgetting():
            name = row["name"]
            if name.startswith(RETENTION_PREFIX):
                data.retention.append({**row, "env": name.removeprefix(RETENTION_PREFIX)})
            elif name == KL_ROW:
                data.kl_to_base.append(row)
    finally:
        store.close()
    summary_path = run_dir / "summary.json"
    if summary_path.exists():
        data.summary = json.loads(summary_path.read_text())
    if not data.trained_envs and data.summary:
        data.trained_envs = sorted(data.summary.get("per_env", {}).get("after", {}))
    return data


def write_report(run_dir: str | Path) -> Path:
    """Write `report.html` for a run; returns its path.

    Raises:
        FileNotFoundError: `run_dir` is not a directory.
    """
    data = load_run(run_dir)
    sections = [
        ("learning", "Learning", learning_section(data)),
        ("health", "Policy health", health_section(data)),
        ("monitors", "Reward-hacking monitors", monitors_section(data)),
        ("judges", "Judges and their cost", judges_section(data)),
        ("throughput", "Throughput", throughput_section(data)),
        ("forgetting", "Forgetting", forgetting_section(data)),
        ("rollouts", "Rollouts", rollout_browser(data.best, data.worst, data.flagged)),
    ]
    body = [section(sid, title, html) for sid, title, html in sections if html]
    out = data.run_dir / "report.html"
    out.write_text(page(data, [(sid, t) for sid, t, html in sections if html], body))
    return out
