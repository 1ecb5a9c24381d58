"""Live progress for `burnish train` and `burnish demo`: a rich progress bar and a final table."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from burnish.config import RunConfig
from burnish.judges.metrics import health_summary
from burnish.train.loop import train


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def train_with_progress(
    config: RunConfig, *, resume: bool = False, console: Console | None = None
) -> dict:
    """Run `train` with a progress bar showing reward and the latest test pass@1."""
    console = console or Console()
    state = {"pass1": None}
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=config.train.steps, info="sampling...")

        def on_step(step: int, metrics: dict[str, float]) -> None:
            for k, v in metrics.items():
                if k.startswith("eval/") and k.endswith("/pass@1"):
                    state["pass1"] = v
            info = (
                f"reward {_fmt(metrics.get('reward/mean'))}  "
                f"len {_fmt(metrics.get('length/mean'))}  "
                f"test pass@1 {_fmt(state['pass1'])}"
            )
            unscorable = metrics.get("reward/unscorable_frac", 0.0)
            failed = any(v for k, v in metrics.items() if k.startswith("judge/failed_calls"))
            if unscorable or failed:  # judge health belongs on the line people watch
                info += f"  [red]unscorable {unscorable:.0%}  {health_summary(metrics)}[/red]"
            bar.update(task, completed=step + 1, info=info)

        summary = train(config, resume=resume, on_step=on_step)
    table = Table(
        title=f"{config.model.name} on {', '.join(e.name for e in config.env.entries())} "
        f"({config.algorithm.loss}, {summary['steps']} steps, {summary['wall_seconds']:.0f} s)"
    )
    table.add_column("test split")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for k in ("pass@1", "mean_reward"):
        table.add_row(k, _fmt(summary["before"][k]), _fmt(summary["after"][k]))
    console.print(table)
    if summary["alerts"]:
        console.print(
            f"[yellow]{len(summary['alerts'])} monitor alert(s); see `burnish inspect "
            f"{summary['run_dir']} --flagged` and report.html"
        )
    console.print(f"run directory: {summary['run_dir']}")
    return summary
