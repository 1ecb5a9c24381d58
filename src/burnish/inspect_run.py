"""`burnish inspect`: the best and worst rollouts of a step, or the monitors' flagged samples."""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from burnish.store import RunStore


def _row_text(r: dict, width: int = 160) -> str:
    text = r["completion"].replace("\n", " / ")
    return text if len(text) <= width else text[: width - 3] + "..."


def inspect_run(
    run_dir: str,
    *,
    step: int | None = None,
    top: int = 3,
    flagged: bool = False,
    console: Console | None = None,
) -> None:
    console = console or Console()
    store = RunStore.open(run_dir)
    try:
        last = store.last_step()
        if last is None:
            raise ValueError(f"run {run_dir} has no logged steps yet")
        if flagged:
            rows = store.flagged(step)
            table = Table(title=f"flagged samples ({len(rows)})")
            for col in ("step", "group", "sample", "reward", "flags", "text"):
                table.add_column(col)
            for f in rows:
                table.add_row(
                    str(f["step"]),
                    str(f["group"]),
                    str(f["sample"]),
                    f"{f['reward']}",
                    json.dumps(f["flags"], default=str)[:80],
                    str(f["text"])[:120],
                )
            console.print(table)
            return
        step = last if step is None else step
        rows = [r for r in store.rollouts(step) if r["reward"] is not None]
        if not rows:
            raise ValueError(f"step {step} has no scored rollouts (steps 0..{last} are logged)")
        rows.sort(key=lambda r: r["reward"], reverse=True)
        for title, chosen in (("best", rows[:top]), ("worst", rows[-top:][::-1])):
            table = Table(title=f"step {step}: {title} {len(chosen)} of {len(rows)}")
            for col in ("reward", "task", "stop", "completion"):
                table.add_column(col)
            for r in chosen:
                table.add_row(
                    f"{r['reward']:.3f}", str(r["task_id"]), r["stop_reason"], _row_text(r)
                )
            console.print(table)
    finally:
        store.close()
