"""Line plots of the run report as inline SVG (text kept as text, alerts as named SVG groups).

`svg_plot` draws one panel: labelled axes, integer step ticks, a legend, and one red marker per
alert. Each alert marker is an SVG group `<g class="alert-marker" id="<plot>-alert-...">`, so a
browser (or a test) finds the alerts in the page's DOM.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

Series = tuple[list[int], list[float]]

_STYLE = {
    "svg.fonttype": "none",  # text stays text: smaller, sharper, searchable
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def series(steps: Sequence[Mapping[str, Any]], key: str) -> Series:
    """(steps, values) of one metric, skipping steps without a finite value."""
    xs, ys = [], []
    for row in steps:
        v = row.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(int(row["step"]))
            ys.append(float(v))
    return xs, ys


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "plot"


def svg_plot(
    plot_id: str,
    title: str,
    lines: Mapping[str, Series],
    ylabel: str,
    alerts: Sequence[Mapping[str, Any]] = (),
    xlabel: str = "step",
) -> str | None:
    """One panel as an inline `<svg>` string, or None when no line has a point.

    `alerts` are alert rows of the store (`step`, `rule`, `signal`); each is drawn as a dashed
    red line with a marker and becomes an SVG group with class `alert-marker`.
    """
    lines = {k: v for k, v in lines.items() if v[0]}
    if not lines:
        return None
    pid = _slug(plot_id)
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 2.9))
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, label=label, marker="o" if len(xs) <= 30 else None, markersize=3)
        top = ax.get_ylim()[1]
        for i, a in enumerate(alerts):
            line = ax.axvline(a["step"], color="#d62728", alpha=0.7, linestyle="--", linewidth=1.2)
            line.set_gid(f"alert-{i}-step-{a['step']}-{_slug(str(a['rule']))}")
            ax.plot([a["step"]], [top], marker="v", color="#d62728", markersize=7, clip_on=False)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(lines) > 1 or alerts:
            handles, labels = ax.get_legend_handles_labels()
            if alerts:
                handles.append(plt.Line2D([], [], color="#d62728", linestyle="--"))
                labels.append(f"alert ({len(alerts)})")
            ax.legend(handles, labels, loc="best", framealpha=0.8)
        fig.tight_layout()
        buf = io.StringIO()
        fig.savefig(buf, format="svg")
        plt.close(fig)
    return _inline(buf.getvalue(), pid)


def _inline(svg: str, pid: str) -> str:
    """Make a matplotlib SVG document embeddable: no XML prolog, scalable, ids unique per plot."""
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", svg, count=1)
    svg = re.sub(r'id="([^"]+)"', rf'id="{pid}-\1"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", rf"url(#{pid}-\1)", svg)
    svg = re.sub(r'href="#([^"]+)"', rf'href="#{pid}-\1"', svg)
    svg = svg.replace(f'<g id="{pid}-alert-', f'<g class="alert-marker" id="{pid}-alert-')
    return svg.replace("<svg", f'<svg role="img" aria-label="{pid}"', 1)
