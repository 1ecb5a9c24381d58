"""Live progress for `burnish train` and `burnish demo`: a rich progress bar and a final table."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from burnish.config import RunConfig
from burnish.judges.metrics import health_summary
from burnish.train.loop import train


def _fmt(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _eval_pass1(metrics: dict[str, float]) -> float | None:
    """Test pass@1 of a mid-run evaluation in a step's metrics, averaged over environments as
    the summary's headline is (None when the step had no evaluation)."""
    values = [v for k, v in metrics.items() if k.startswith("eval/") and k.endswith("/pass@1")]
    return sum(values) / len(values) if values else None


def _starts_with_baseline(config: RunConfig, resume: bool) -> bool:
    """Whether the run begins with the baseline evaluation (not when resuming a checkpoint)."""
    from pathlib import Path

    from burnish.train.checkpoint import list_checkpoints

    return not (resume and list_checkpoints(Path(config.log.run_dir)))


def train_with_progress(
    config: RunConfig, *, resume: bool = False, console: Console | None = None
) -> dict:
    """Run `train` with a progress bar: the phase (baseline eval, training, final eval), steps,
    elapsed and remaining time, reward, length, the latest test pass@1 with the step it was
    measured at, and judge health when judges fail; then the before/after table."""
    console = console or Console()
    state: dict[str, Any] = {"pass1": None, "at": None}
    total = config.train.steps
    columns = (
        TextColumn("[bold]{task.fields[phase]:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    baseline = _starts_with_baseline(config, resume)
    first = "baseline eval" if baseline else "training"
    with Progress(*columns, console=console, transient=False) as bar:
        wait = "evaluating the base model on the test split" if baseline else "sampling"
        task = bar.add_task("train", total=total, phase=first, info=wait + "...")

        def on_step(step: int, metrics: dict[str, float]) -> None:
            pass1 = _eval_pass1(metrics)
            if pass1 is not None:
                state["pass1"], state["at"] = pass1, step + 1
            at = f" (step {state['at']})" if state["at"] is not None else ""
            info = (
                f"reward {_fmt(metrics.get('reward/mean'))}  "
                f"len {_fmt(metrics.get('length/mean'))}  "
                f"test pass@1 {_fmt(state['pass1'])}{at}"
            )
            unscorable = metrics.get("reward/unscorable_frac", 0.0)
            failed = any(v for k, v in metrics.items() if k.startswith("judge/failed_calls"))
            if unscorable or failed:  # judge health belongs on the line people watch
                info += f"  [red]unscorable {unscorable:.0%}  {health_summary(metrics)}[/red]"
            phase = "final eval" if step + 1 >= total else "training"
            if phase == "final eval":
                info += "  evaluating the test split..."
            bar.update(task, completed=step + 1, info=info, phase=phase)

        summary = train(config, resume=resume, on_step=on_step)
        done_info = bar.tasks[0].fields["info"].replace("  evaluating the test split...", "")
        bar.update(task, phase="done", info=done_info)
    _print_summary(console, config, summary, state["at"])
    return summary


def _print_summary(console: Console, config: RunConfig, summary: dict, last_eval: int | None):
    """The before/after table (which evaluations it compares) and where to look next."""
    steps = summary["steps"]
    table = Table(
        title=f"{config.model.name} on {', '.join(e.name for e in config.env.entries())} "
        f"({config.algorithm.loss}, {steps} steps, {summary['wall_seconds']:.0f} s)"
    )
    table.add_column("test split")
    table.add_column("before (step 0)", justify="right")
    table.add_column(f"after (step {steps})", justify="right")
    for k in ("pass@1", "mean_reward"):
        table.add_row(k, _fmt(summary["before"][k]), _fmt(summary["after"][k]))
    console.print(table)
    if last_eval is not None and last_eval != steps:
        console.print(
            f"[dim]the bar's test pass@1 is the evaluation at step {last_eval}; 'after' is the "
            f"final evaluation after step {steps} (same tasks and settings)[/dim]"
        )
    if summary["alerts"]:
        console.print(
            f"[yellow]{len(summary['alerts'])} monitor alert(s); see `burnish inspect "
            f"{summary['run_dir']} --flagged` and report.html"
        )
    console.print(f"report: {summary['run_dir']}/report.html")
    console.print(f"run directory: {summary['run_dir']}")
    return summary
