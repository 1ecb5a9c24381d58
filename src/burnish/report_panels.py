"""The plot sections of the run report, each built from the store's rows (`report.RunData`).

Each `*_section(data)` returns the section's HTML, or "" when the run has nothing for it (a run
without judges still gets a one-line judges section; forgetting appears only when measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from burnish.monitors.glossary import describe
from burnish.report_html import alert_table, before_after, esc, figure, table
from burnish.report_plots import Series, series, svg_plot

_REWARD_STATS = ("mean", "std", "max", "unscorable_frac")
"""`reward/<x>` step metrics that are statistics, not reward components."""
QUIET_TOL = 1e-9
"""A signal whose values never move by more than this counts as quiet (folded into one line)."""


def _panel(
    data, pid: str, title: str, keys: Sequence[str], ylabel: str, alerts=(), note: str = ""
) -> str:
    """One plot of step metrics; lines that stayed at 0 are left out when others move (a panel
    whose lines all stayed at 0 is "": the section names it in its quiet line)."""
    lines = {k: series(data.steps, k) for k in keys}
    lines = {k: v for k, v in lines.items() if v[0]}
    moving = {k: v for k, v in lines.items() if _quiet(data, k) != 0}
    if not moving and not alerts:
        return ""
    return figure(svg_plot(pid, title, moving or lines, ylabel, alerts), note, alerts)


def _placed_alerts(data) -> tuple[dict[str, list[dict]], list[dict]]:
    """Alerts by the monitor plot that shows them; the rest (composite rules, signals without a
    plot) go on the training-reward plot."""
    keys = {k for row in data.steps for k in row if k.startswith("monitor/")}
    by_key: dict[str, list[dict]] = {}
    rest = []
    for a in data.alerts:
        key = f"monitor/{a['signal']}"
        if key in keys:
            by_key.setdefault(key, []).append(a)
        else:
            rest.append(a)
    return by_key, rest


def _eval_lines(evals: Sequence[Mapping[str, Any]], envs: Sequence[str]) -> dict[str, Series]:
    lines: dict[str, Series] = {}
    for row in evals:
        if row["env"] in envs and isinstance(row.get("pass@1"), (int, float)):
            xs, ys = lines.setdefault(row["env"], ([], []))
            xs.append(int(row["step"]))
            ys.append(float(row["pass@1"]))
    return lines


def _eval_note(evals: Sequence[Mapping[str, Any]]) -> str:
    if not evals:
        return ""
    last = evals[-1]
    return (
        f"{last.get('n_tasks')} test tasks x {last.get('samples')} samples per evaluation; the "
        "last point is the final evaluation of the summary"
    )


def learning_section(data) -> str:
    """Before/after table, training reward (with unplaced alerts), components, test pass@1."""
    _, rest = _placed_alerts(data)
    all_keys = {k for row in data.steps for k in row}
    components = sorted(
        k for k in all_keys if k.startswith("reward/") and k.split("/", 1)[1] not in _REWARD_STATS
    )
    test = svg_plot(
        "test-pass1",
        "test pass@1 (evaluations during the run)",
        _eval_lines(data.evals, data.trained_envs),
        "pass@1",
    )
    per_env = sorted(k for k in all_keys if k.startswith("env/") and k.endswith("/reward_mean"))
    plots = [
        _panel(data, "reward", "training reward", ["reward/mean", "reward/max"], "reward", rest),
        _panel(data, "env-reward", "training reward per environment", per_env, "reward"),
        _panel(data, "components", "reward components (step mean)", components, "value"),
        figure(test, _eval_note(data.evals)),
    ]
    return before_after(data.summary) + "<div class='grid'>" + "".join(plots) + "</div>"


def health_section(data) -> str:
    """KL, entropy, clipping, zero-variance groups, length, loss and gradient norm."""
    panels = [
        ("kl", "KL to the reference", ["kl/mean"], "KL (nats)"),
        ("entropy", "policy entropy", ["entropy/mean"], "nats per token"),
        ("clip", "clipped tokens", ["clip/low_frac", "clip/high_frac", "cispo/capped_frac"], "fraction"),
        ("zero-std", "groups with no reward spread", ["group/frac_zero_std"], "fraction of groups"),
        ("length", "completion length", ["length/mean", "length/max"], "sampled tokens"),
        ("loss", "loss", ["loss/total", "loss/policy", "loss/kl"], "loss"),
        ("grad", "gradient norm (before clipping)", ["grad/norm"], "L2 norm"),
    ]  # fmt: skip
    plots = [_panel(data, *p) for p in panels]
    present = {k for row in data.steps for k in row}
    flat = [
        title
        for (_, title, keys, _), plot in zip(panels, plots)
        if not plot and any(k in present for k in keys)
    ]
    note = f"<p class='quiet'>stayed at 0: {esc(', '.join(flat))}.</p>" if flat else ""
    return "<div class='grid'>" + "".join(plots) + "</div>" + note


def _quiet(data, key: str) -> float | None:
    """The constant value of a signal that never moved, else None."""
    _, ys = series(data.steps, key)
    if ys and max(ys) - min(ys) <= QUIET_TOL:
        return ys[0]
    return None


def monitors_section(data) -> str:
    """Alerts with their evidence, one plot per moving signal (what it measures under it, its
    alerts drawn on it), and the quiet signals folded into one line."""
    by_key, _ = _placed_alerts(data)
    keys = sorted({k for row in data.steps for k in row if k.startswith("monitor/")})
    moving, quiet = [], []
    for key in keys:
        value = _quiet(data, key)
        if value is None or by_key.get(key):
            moving.append(key)
        else:
            quiet.append((key, value))
    head = f"<p><b>{len(data.alerts)} alert(s)</b> in {len(data.steps)} steps.</p>"
    plots = [
        _panel(data, k, k.removeprefix("monitor/"), [k], "value", by_key.get(k, []), describe(k))
        for k in moving
    ]
    return (
        head
        + alert_table(data.alerts)
        + "<div class='grid'>"
        + "".join(plots)
        + "</div>"
        + (_quiet_line(quiet))
    )


def _quiet_line(quiet: list[tuple[str, float]]) -> str:
    if not quiet:
        return ""
    zeros = [k for k, v in quiet if v == 0]
    constant = len(quiet) - len(zeros)
    text = f"{len(zeros)} signals stayed at 0" if zeros else ""
    if constant:
        text += ("; " if text else "") + f"{constant} stayed constant"
    rows = [(esc(k.removeprefix("monitor/")), f"{v:g}", esc(describe(k))) for k, v in quiet]
    return (
        f"<details class='quiet'><summary>{text} (no alert)</summary>"
        + table(("signal", "value", "what it measures"), rows)
        + "</details>"
    )


def judges_section(data) -> str:
    """Judge calls, tokens, cost, failures and cache hits per judge; totals."""
    keys = sorted({k for row in data.steps for k in row if k.startswith("judge/")})
    if not keys:
        return "<p>No judges in this run: the reward is the environment's own check.</p>"
    metrics: dict[str, list[str]] = {}
    for k in keys:  # judge/<metric>/<judge name>
        metrics.setdefault(k.split("/")[1], []).append(k)
    totals = []
    for metric in ("calls", "tokens", "cost_usd", "failed_calls", "unscorable"):
        for k in metrics.get(metric, []):
            total = sum(series(data.steps, k)[1])
            totals.append((esc(k), f"{total:,.4g}"))
    plots = [
        _panel(data, f"judge-{m}", f"judge {m.replace('_', ' ')}", ks, m.replace("_", " "))
        for m, ks in metrics.items()
    ]
    return (
        table(("judge metric", "run total"), totals)
        + "<div class='grid'>"
        + "".join(plots)
        + "</div>"
    )


def throughput_section(data) -> str:
    """Seconds per step and sampling time; sampled tokens per second."""
    rate = []
    for row in data.steps:
        t, n, length = row.get("time/step"), row.get("episodes/count"), row.get("length/mean")
        if t and n and length is not None:
            rate.append({"step": row["step"], "tokens/s": n * length / t})
    tokens = svg_plot(
        "tokens-per-s",
        "sampled tokens per second",
        {"tokens/s": series(rate, "tokens/s")},
        "tokens / s",
    )
    wall = data.summary.get("wall_seconds")
    head = f"<p>wall time {wall:.0f} s for {data.summary.get('steps')} steps.</p>" if wall else ""
    plots = [
        _panel(data, "time", "time per step", ["time/step", "time/sample"], "seconds"),
        figure(tokens, "all episodes of the step, sampled tokens only"),
    ]
    return head + "<div class='grid'>" + "".join(plots) + "</div>"


def forgetting_section(data) -> str:
    """pass@1 on environments the run did not train on (evaluations of other environments and
    the `eval.retention` skills), and the KL to the base policy, across the run ("" when none)."""
    evals = data.evals + data.retention
    others = sorted({r["env"] for r in evals} - set(data.trained_envs))
    if not others or not data.trained_envs:
        return ""
    rows = []
    for env in others:
        points = [r for r in evals if r["env"] == env and "pass@1" in r]
        first, last = points[0], points[-1]
        delta = last["pass@1"] - first["pass@1"]
        rows.append(
            (
                esc(env),
                f"{first['pass@1']:.3f} (step {first['step']})",
                f"{last['pass@1']:.3f} (step {last['step']})",
                f"{delta:+.3f}",
            )
        )
    plot = svg_plot("retention", "retention: pass@1 off the trained environments",
                    _eval_lines(evals, others), "pass@1")  # fmt: skip
    figures = [figure(plot, "environments not trained on; a falling line is forgetting")]
    if data.kl_to_base:
        kl = {
            f"KL {d}": (
                [int(r["step"]) for r in data.kl_to_base if d in r],
                [float(r[d]) for r in data.kl_to_base if d in r],
            )
            for d in ("forward", "reverse")
        }
        kl_plot = svg_plot("kl_to_base", "KL to the base policy", kl, "nats per token")
        figures.append(figure(kl_plot, "on the new task's test prompts, both directions"))
    return table(("environment", "first", "last", "change"), rows) + (
        "<div class='grid'>" + "".join(figures) + "</div>"
    )
