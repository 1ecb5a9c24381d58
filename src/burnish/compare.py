"""`burnish compare`: one table and plots for any set of runs (RL, SFT, distillation, OPD).

For each run: the new task before -> after (pass@1 on its test split), each retention skill
before -> after, the KL to base after training, and the compute used (training samples, tokens
through a model, wall time). Then the matched-gain comparison and the forgetting-vs-KL fit.

- Gain at an eval point: new-task pass@1 minus its value before training. Retention drop: the
  mean over retention skills of (pass@1 before − pass@1 now); positive = forgetting.
- Matched gain G*: the largest gain every run reaches, i.e. the minimum over runs of each run's
  best gain (at least 0). For each run, the first eval point where the gain reaches G* is
  found and its retention drop, forward KL and compute are interpolated linearly between that
  point and the one before it.
- Razor fit: retention drop against forward KL over all eval points of all runs (step 0
  included), least squares with an intercept; R² is the squared Pearson correlation.

With `--json` the last line printed is one JSON object (the shape is a contract; see
docs/sft_distillation.md).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from burnish.store import RunStore
from burnish.train.forgetting import KL_ROW, RETENTION_PREFIX

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class RunCurve:
    """One run's eval points (ordered by step) and its summary."""

    run_dir: str
    method: str
    env: str
    steps: list[int]
    new_task: list[float]
    retention: dict[str, list[float]]
    kl_forward: list[float]
    kl_reverse: list[float]
    samples: list[float]
    tokens: list[float]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def gains(self) -> list[float]:
        return [v - self.new_task[0] for v in self.new_task]

    @property
    def drops(self) -> list[float]:
        if not self.retention:
            return [0.0] * len(self.steps)
        skills = list(self.retention.values())
        return [sum(s[0] - s[i] for s in skills) / len(skills) for i in range(len(self.steps))]


def load_curve(run_dir: str | Path) -> RunCurve:
    """Read a finished run's eval points, compute totals and summary."""
    path = Path(run_dir)
    summary_path = path / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{path} has no summary.json: not a finished run")
    summary = json.loads(summary_path.read_text())
    config_path = path / "config.toml"
    if config_path.is_file():
        lora = tomllib.loads(config_path.read_text()).get("lora", {}).get("enabled", True)
        summary = {**summary, "lora": "LoRA" if lora else "full"}
    store = RunStore.open(path / "run.db")
    try:
        evals, steps, forgetting = store.evals(), store.steps(), store.forgetting()
    finally:
        store.close()
    env = next(iter(summary["per_env"]["after"]))
    by_step: dict[int, dict[str, dict]] = {}
    for row in evals:
        by_step.setdefault(row["step"], {})[row["env"]] = row
    for row in forgetting:
        by_step.setdefault(row["step"], {})[row["name"]] = row
    points = sorted(s for s, rows in by_step.items() if env in rows)
    skills = sorted(summary.get("retention", {}))
    cum_samples, cum_tokens, acc = {}, {}, [0.0, 0.0]
    for s in steps:
        acc[0] += s.get("compute/samples", 0.0)
        acc[1] += s.get("compute/tokens", 0.0)
        cum_samples[s["step"] + 1], cum_tokens[s["step"] + 1] = acc[0], acc[1]

    def at(table: dict[int, float], step: int) -> float:
        done = [k for k in table if k <= step]
        return table[max(done)] if done else 0.0

    kl = [by_step[p].get(KL_ROW, {}) for p in points]
    return RunCurve(
        run_dir=str(run_dir),
        method=summary.get("method", "rl"),
        env=env,
        steps=points,
        new_task=[by_step[p][env]["pass@1"] for p in points],
        retention={
            k: [by_step[p].get(RETENTION_PREFIX + k, {}).get("pass@1", math.nan) for p in points]
            for k in skills
        },
        kl_forward=[r.get("forward", 0.0) for r in kl],
        kl_reverse=[r.get("reverse", 0.0) for r in kl],
        samples=[at(cum_samples, p) for p in points],
        tokens=[at(cum_tokens, p) for p in points],
        summary=summary,
    )


def at_gain(curve: RunCurve, gain: float) -> dict[str, float]:
    """Retention drop, forward KL, samples and tokens where `curve` first reaches `gain`,
    interpolated linearly between that eval point and the one before it."""
    g = curve.gains
    i = next((k for k, v in enumerate(g) if v >= gain - 1e-12), None)
    if i is None:
        raise ValueError(f"{curve.run_dir} never reaches a gain of {gain}")
    if i == 0 or g[i] == g[i - 1]:
        w, j = 1.0, i
    else:
        w, j = (gain - g[i - 1]) / (g[i] - g[i - 1]), i - 1

    def lerp(values: list[float]) -> float:
        return values[j] + w * (values[i] - values[j])

    return {
        "retention_drop": lerp(curve.drops),
        "kl_forward": lerp(curve.kl_forward),
        "samples": lerp(curve.samples),
        "tokens": lerp(curve.tokens),
        "step": lerp([float(s) for s in curve.steps]),
    }


def r_squared(x: list[float], y: list[float]) -> float:
    """Squared Pearson correlation of `x` and `y` (the R² of a least-squares line); 0 when either
    is constant or there are fewer than 3 points."""
    n = len(x)
    if n < 3:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    if sxx == 0 or syy == 0:
        return 0.0
    return sxy * sxy / (sxx * syy)


def compare(curves: list[RunCurve]) -> dict[str, Any]:
    """The comparison object of `burnish compare --json` (see the module docstring)."""
    if not curves:
        raise ValueError("compare needs at least one run directory")
    gain = max(0.0, min(max(c.gains) for c in curves))
    matched = {c.run_dir: at_gain(c, gain) for c in curves}
    xs = [k for c in curves for k in c.kl_forward]
    ys = [d for c in curves for d in c.drops]
    runs = []
    for c in curves:
        s = c.summary
        runs.append(
            {
                "run_dir": c.run_dir,
                "method": c.method,
                "new_task": {"env": c.env, "before": c.new_task[0], "after": c.new_task[-1]},
                "retention": {k: {"before": v[0], "after": v[-1]} for k, v in c.retention.items()},
                "kl_to_base": {"forward": c.kl_forward[-1], "reverse": c.kl_reverse[-1]},
                "samples": int(s.get("compute", {}).get("samples", c.samples[-1])),
                "tokens": int(s.get("compute", {}).get("tokens", c.tokens[-1])),
                "wall_seconds": float(s.get("wall_seconds", 0.0)),
            }
        )
    return {
        "runs": runs,
        "matched": {
            "gain": gain,
            "runs": {
                k: {"retention_drop": v["retention_drop"], "kl_forward": v["kl_forward"]}
                for k, v in matched.items()
            },
        },
        "razor": {"r2": r_squared(xs, ys), "points": len(xs)},
        "_matched_compute": matched,
    }


def contract(result: dict[str, Any]) -> dict[str, Any]:
    """The result without the keys that are not part of the `--json` contract."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def compare_text(result: dict[str, Any]) -> str:
    """The plain-text tables: per run, then matched gain (with the compute to reach it)."""
    lines = [
        "run | method | new task before -> after | retention drop | KL fwd / rev | samples | tokens | wall s"
    ]
    for r in result["runs"]:
        ret = r["retention"]
        drop = sum(v["before"] - v["after"] for v in ret.values()) / len(ret) if ret else 0.0
        nt, kl = r["new_task"], r["kl_to_base"]
        lines.append(
            f"{r['run_dir']} | {r['method']} | {nt['before']:.3f} -> {nt['after']:.3f} | "
            f"{drop:+.3f} | {kl['forward']:.3f} / {kl['reverse']:.3f} | {r['samples']} | "
            f"{r['tokens']} | {r['wall_seconds']:.0f}"
        )
    lines += ["", f"matched gain {result['matched']['gain']:+.3f}:"]
    lines.append("run | retention drop | KL fwd | samples | tokens | step")
    for run_dir, m in result["_matched_compute"].items():
        lines.append(
            f"{run_dir} | {m['retention_drop']:+.3f} | {m['kl_forward']:.3f} | "
            f"{m['samples']:.0f} | {m['tokens']:.0f} | {m['step']:.1f}"
        )
    rz = result["razor"]
    lines += [
        "",
        f"retention drop ~ forward KL: R² = {rz['r2']:.3f} over {rz['points']} eval points",
    ]
    return "\n".join(lines)


_COLORS = {"rl": "tab:blue", "sft": "tab:red", "distill": "tab:orange", "opd": "tab:green"}


def write_plots(curves: list[RunCurve], result: dict[str, Any], out: str | Path) -> list[Path]:
    """`forgetting_vs_gain.png` and `forgetting_vs_kl.png` in `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "forgetting_vs_gain.png", out / "forgetting_vs_kl.png"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    for c in curves:
        ax.plot(
            c.gains, c.drops, "-o", ms=3, color=_COLORS.get(c.method), alpha=0.7, label=_label(c)
        )
    ax.axvline(result["matched"]["gain"], color="grey", ls=":", label="matched gain")
    ax.set(xlabel="new-task gain (pass@1)", ylabel="retention drop (mean pass@1)")
    _legend(ax)
    fig.tight_layout()
    fig.savefig(paths[0])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=90)
    for c in curves:
        ax.scatter(
            c.kl_forward, c.drops, s=10, color=_COLORS.get(c.method), alpha=0.7, label=_label(c)
        )
    ax.set(
        xlabel="forward KL(base ‖ policy) on new-task prompts (nats/sequence)",
        ylabel="retention drop",
        title=f"R² = {result['razor']['r2']:.2f} ({result['razor']['points']} eval points)",
    )
    _legend(ax)
    fig.tight_layout()
    fig.savefig(paths[1])
    plt.close(fig)
    return paths


def _label(c: RunCurve) -> str:
    lora = c.summary.get("lora", None)
    return c.method if lora is None else f"{c.method} ({lora})"


def _legend(ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    seen: dict[str, Any] = {}
    for h, lab in zip(handles, labels, strict=True):
        seen.setdefault(lab, h)
    ax.legend(seen.values(), seen.keys(), fontsize=7)
