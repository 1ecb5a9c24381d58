"""HTML pieces of the run report: the page, sections, tables, alert evidence, rollout cards.

Everything is escaped here; the page has no script and loads nothing (one file, shareable).
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

esc = html.escape

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;
 background:#f6f7f9;line-height:1.45}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px} header p{margin:4px 0 0;color:#c7ccd6}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #dde1e7;padding:8px 24px;z-index:2}
nav a{margin-right:18px;color:#2456a6;text-decoration:none;font-weight:600}
main{padding:0 24px 40px}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:18px 0;padding:6px 18px 16px}
h2{font-size:18px;margin:12px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
figure{margin:0;border:1px solid #eceef2;border-radius:6px;padding:6px;background:#fff}
figure svg{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#4a5363;padding:2px 6px}
.alerts-here{color:#b3261e;font-weight:600}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
td,th{padding:4px 10px;border-bottom:1px solid #eceef2;text-align:left;vertical-align:top}
th{background:#f1f3f6}
.num{text-align:right;font-variant-numeric:tabular-nums}
.up{color:#1a7f37}.down{color:#b3261e}
details.quiet summary{cursor:pointer;color:#4a5363;margin-top:10px}
.evidence dt{font-weight:600;font-size:13px}.evidence dd{margin:0 0 4px 12px;font-size:13px}
.rollout{border:1px solid #eceef2;border-radius:6px;margin:8px 0;padding:6px 10px}
.rollout summary{cursor:pointer}
.rollout pre{white-space:pre-wrap;word-break:break-word;background:#f6f7f9;padding:6px;margin:4px 0}
.chip{display:inline-block;background:#eef1f6;border-radius:10px;padding:0 8px;margin:1px 3px;font-size:12px}
.chip.flag{background:#fde7e6;color:#8c1d18}
.browser h3{font-size:15px;margin:14px 0 4px}
"""


def page(data, nav: Sequence[tuple[str, str]], body: Sequence[str]) -> str:
    """The whole document: header (run, steps, environments), navigation, sections."""
    summary = data.summary
    facts = [f"{len(data.steps)} steps"]
    if data.trained_envs:
        facts.append("trained on " + ", ".join(data.trained_envs))
    facts.append(f"{len(data.alerts)} alert(s)")
    if summary.get("wall_seconds") is not None:
        facts.append(f"{summary['wall_seconds']:.0f} s")
    links = "".join(f"<a href='#{sid}'>{esc(title)}</a>" for sid, title in nav)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>burnish run {esc(str(data.run_dir))}</title><style>{CSS}</style></head><body>"
        f"<header><h1>burnish run <code>{esc(str(data.run_dir))}</code></h1>"
        f"<p>{esc(' · '.join(facts))}</p></header><nav>{links}</nav><main>"
        + "".join(body)
        + "</main></body></html>"
    )


def section(sid: str, title: str, inner: str) -> str:
    return f"<section id='{sid}'><h2>{esc(title)}</h2>{inner}</section>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure(svg: str | None, note: str = "", alerts: Sequence[Mapping[str, Any]] = ()) -> str:
    """A plot with its caption (what it shows) and the steps of the alerts drawn on it."""
    if svg is None:
        return ""
    caption = esc(note)
    if alerts:
        steps = ", ".join(f"{a['rule']} at step {a['step']}" for a in alerts)
        caption += f" <span class='alerts-here'>alerts: {esc(steps)}</span>"
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        text = json.dumps(v, default=str)
        return text if len(text) <= 300 else text[:297] + "..."
    return str(v)


def evidence_html(evidence: Any) -> str:
    """An alert's evidence as a definition list (example rollouts as quoted excerpts)."""
    if not isinstance(evidence, Mapping):
        return f"<pre>{esc(_fmt(evidence))}</pre>"
    items = []
    for k, v in evidence.items():
        if k == "examples" and isinstance(v, list):
            shown = "".join(f"<pre>{esc(_fmt(x))}</pre>" for x in v[:3])
        else:
            shown = esc(_fmt(v))
        items.append(f"<dt>{esc(str(k))}</dt><dd>{shown}</dd>")
    return f"<dl class='evidence'>{''.join(items)}</dl>"


def alert_table(alerts: Sequence[Mapping[str, Any]]) -> str:
    """Every alert: step, rule, signal, value against threshold, and its evidence."""
    if not alerts:
        return ""
    rows = [
        (
            str(a["step"]),
            esc(str(a["rule"])),
            esc(str(a["signal"])),
            f"{_fmt(a.get('value'))} / {_fmt(a.get('threshold'))}",
            evidence_html(a.get("evidence")),
        )
        for a in alerts
    ]
    return table(("step", "rule", "signal", "value / threshold", "evidence"), rows)


def before_after(summary: Mapping[str, Any]) -> str:
    """Test-split metrics before and after training, overall and per environment."""
    if not summary.get("before"):
        return "<p>No summary yet: the run has not finished.</p>"
    rows = []
    per_env = summary.get("per_env", {})
    for k in ("pass@1", "mean_reward"):
        b, a = summary["before"].get(k), summary["after"].get(k)
        if b is None or a is None:
            continue
        cls = "up" if a > b else "down" if a < b else ""
        rows.append((k, f"{b:.3f}", f"{a:.3f}", f"<span class='{cls}'>{a - b:+.3f}</span>"))
    if len(per_env.get("after", {})) > 1:
        for env, m in per_env["after"].items():
            b = per_env.get("before", {}).get(env, {}).get("pass@1")
            rows.append((f"pass@1 {esc(env)}", _fmt(b), _fmt(m.get("pass@1")), ""))
    return "<h3>test split, before and after training</h3>" + table(
        ("metric", "before", "after", "change"), rows
    )


def _rollout_card(r: Mapping[str, Any], open_: bool = False) -> str:
    reward = "unscorable" if r.get("reward") is None else f"{r['reward']:.3f}"
    flags = "".join(
        f"<span class='chip flag'>{esc(str(k))} {esc(_fmt(v))}</span>"
        for k, v in (r.get("flags") or {}).items()
    )
    comps = "".join(
        f"<span class='chip'>{esc(str(k))} {esc(_fmt(v))}</span>"
        for k, v in (r.get("components") or {}).items()
    )
    copies = f" ×{r['copies']}" if r.get("copies", 1) > 1 else ""
    head = (
        f"<b>reward {reward}</b>{copies} · step {r.get('step')} · task "
        f"{esc(str(r.get('task_id', '?')))} · stop {esc(str(r.get('stop_reason', '?')))} {flags}"
    )
    gold = (r.get("info") or {}).get("gold_answer")
    parts = [f"<div>components: {comps or '-'}</div>"]
    if r.get("prompt") is not None:
        parts.append(f"<div>prompt</div><pre>{esc(str(r['prompt']))}</pre>")
    parts.append(f"<div>completion</div><pre>{esc(str(r.get('completion', '')))}</pre>")
    if gold is not None:
        parts.append(f"<div>gold answer: <code>{esc(_fmt(gold))}</code></div>")
    state = " open" if open_ else ""
    return f"<details class='rollout'{state}><summary>{head}</summary>{''.join(parts)}</details>"


def rollout_browser(best, worst, flagged) -> str:
    """Best and worst distinct rollouts of the last step, and every monitor-flagged sample."""
    parts = ["<div class='browser'>"]
    groups = (
        ("best", "best rollouts of the last step", best),
        ("worst", "worst rollouts of the last step", worst),
        ("flagged", "flagged by a monitor (latest first)", flagged),
    )
    for gid, title, rows in groups:
        parts.append(f"<h3 id='rollouts-{gid}'>{esc(title)} ({len(rows)})</h3>")
        if not rows:
            parts.append("<p>none</p>" if gid != "flagged" else "<p>no rollout was flagged</p>")
        parts.extend(_rollout_card(r, open_=i == 0) for i, r in enumerate(rows))
    parts.append("</div>")
    return "".join(parts)
