"""Plots and an HTML page for a run, read from its store.

`write_report(run_dir)` writes `plots/*.png` and `report.html` (which shows the plots, the
before/after table, the alerts with their evidence, and the flagged samples).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from burnish.store import RunStore  # noqa: E402

# (file name, title, metric keys from the steps table)
PANELS: list[tuple[str, str, list[str]]] = [
    ("reward", "training reward", ["reward/mean"]),
    ("length", "completion length (sampled tokens)", ["length/mean", "length/max"]),
    ("kl", "KL to reference", ["kl/mean"]),
    ("entropy", "policy entropy (nats)", ["entropy/mean"]),
    ("clip", "clip fractions", ["clip/low_frac", "clip/high_frac", "cispo/capped_frac"]),
    ("zero_std", "zero-variance groups", ["group/frac_zero_std"]),
]


def _series(steps: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in steps:
        v = row.get(key)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            xs.append(row["step"])
            ys.append(float(v))
    return xs, ys


def _plot(
    path: Path, title: str, lines: dict[str, tuple[list[int], list[float]]], alerts=()
) -> bool:
    lines = {k: v for k, v in lines.items() if v[0]}
    if not lines:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, (xs, ys) in lines.items():
        ax.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=3)
    for i, step in enumerate(sorted({a["step"] for a in alerts})):
        ax.axvline(step, color="red", alpha=0.4, linestyle="--", label="alert" if i == 0 else None)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_report(run_dir: str | Path) -> Path:
    """Write plots and report.html for a run; returns the HTML path."""
    run_dir = Path(run_dir)
    store = RunStore.open(run_dir)
    steps, evals, alerts = store.steps(), store.evals(), store.alerts()
    flagged = store.flagged()
    store.close()
    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    made: list[tuple[str, str]] = []
    for name, title, keys in PANELS:
        if _plot(plots / f"{name}.png", title, {k: _series(steps, k) for k in keys}, alerts):
            made.append((f"plots/{name}.png", title))
    by_env: dict[str, tuple[list[int], list[float]]] = {}
    for row in evals:
        xs, ys = by_env.setdefault(row["env"], ([], []))
        xs.append(row["step"])
        ys.append(row["pass@1"])
    if _plot(plots / "test_pass1.png", "test pass@1", by_env):
        made.append(("plots/test_pass1.png", "test pass@1"))
    monitor_keys = sorted({k for row in steps for k in row if k.startswith("monitor/")})
    for key in monitor_keys:
        name = key.replace("/", "_")
        hits = [a for a in alerts if a.get("signal") == key.split("/", 1)[1]]
        if _plot(plots / f"{name}.png", key, {key: _series(steps, key)}, hits):
            made.append((f"plots/{name}.png", key))
    out = run_dir / "report.html"
    out.write_text(_html(run_dir, made, alerts, flagged))
    return out


def _html(run_dir: Path, plots: list[tuple[str, str]], alerts, flagged) -> str:
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    esc = html.escape
    parts = [
        f"<html><head><meta charset='utf-8'><title>burnish run {esc(str(run_dir))}</title>",
        "<style>body{font-family:sans-serif;margin:2em}img{margin:4px;border:1px solid #ddd}"
        "td,th{padding:2px 8px;border-bottom:1px solid #eee}pre{white-space:pre-wrap}</style>",
        f"</head><body><h1>burnish run <code>{esc(str(run_dir))}</code></h1>",
    ]
    if summary:
        parts.append(
            "<h2>before / after (test split)</h2><table><tr><th></th><th>before</th><th>after</th></tr>"
        )
        for k in ("pass@1", "mean_reward"):
            b, a = summary.get("before", {}).get(k), summary.get("after", {}).get(k)
            parts.append(
                f"<tr><td>{k}</td><td>{b:.3f}</td><td>{a:.3f}</td></tr>" if b is not None else ""
            )
        parts.append(
            f"</table><p>{summary.get('steps')} steps, {summary.get('wall_seconds')} s</p>"
        )
    parts.append("<h2>plots</h2>")
    parts.extend(f"<img src='{esc(p)}' alt='{esc(t)}'>" for p, t in plots)
    parts.append(
        f"<h2>alerts ({len(alerts)})</h2><table><tr><th>step</th><th>rule</th><th>signal</th><th>evidence</th></tr>"
    )
    for a in alerts:
        parts.append(
            f"<tr><td>{a['step']}</td><td>{esc(str(a['rule']))}</td><td>{esc(str(a['signal']))}</td>"
            f"<td><pre>{esc(json.dumps(a['evidence'], default=str)[:400])}</pre></td></tr>"
        )
    parts.append(
        f"</table><h2>flagged samples ({len(flagged)})</h2><table><tr><th>step</th><th>reward</th><th>flags</th><th>text</th></tr>"
    )
    for f in flagged[-50:]:
        parts.append(
            f"<tr><td>{f['step']}</td><td>{f['reward']}</td><td>{esc(json.dumps(f['flags'], default=str))}</td>"
            f"<td><pre>{esc(str(f['text'])[:300])}</pre></td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)
