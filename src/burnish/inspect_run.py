"""`burnish inspect`: read a run's rollouts in the terminal.

Three views: the best and worst distinct rollouts of a step (prompt, completion, gold answer,
reward components), `--flagged` (only rollouts a monitor flagged, each with the flag, its value and
the signal it feeds) and `--top-reward` (the top-reward samples the monitor keeps every step, for
reading what the policy is paid for; being on that list is not a warning).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from burnish.monitors.glossary import FLAG_HELP, FLAG_SIGNALS
from burnish.run_views import best_and_worst, monitor_flagged
from burnish.store import RunStore


def _clip(text: Any, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 3] + "..."


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def print_rollout(console: Console, i: int, r: dict[str, Any], width: int = 400) -> None:
    """One rollout: header line, then prompt, completion, gold answer, components, flags."""
    reward = "unscorable" if r.get("reward") is None else f"{r['reward']:.3f}"
    copies = f"  ({r['copies']} identical rollouts)" if r.get("copies", 1) > 1 else ""
    console.print(
        f"[bold]#{i}[/bold]  reward [bold]{reward}[/bold]  step {r.get('step')}  task "
        f"{escape(str(r.get('task_id', '?')))}  stop {r.get('stop_reason', '?')}{copies}"
    )
    rows = []
    if r.get("prompt") is not None:
        rows.append(("prompt", _clip(r["prompt"], width)))
    rows.append(("completion", _clip(r.get("completion", ""), width)))
    gold = (r.get("info") or {}).get("gold_answer")
    if gold is not None:
        rows.append(("gold answer", _fmt(gold)))
    comps = r.get("components") or {}
    if comps:
        rows.append(("components", ", ".join(f"{k} {_fmt(v)}" for k, v in comps.items())))
    for flag, value in (r.get("flags") or {}).items():
        signal = FLAG_SIGNALS.get(flag, "?")
        why = FLAG_HELP.get(flag, "")
        rows.append(("flag", f"{flag} = {_fmt(value)} (signal {signal}): {why}"))
    for label, text in rows:
        console.print(f"  [dim]{label:>11}[/dim]  {escape(text)}")


def inspect_run(
    run_dir: str,
    *,
    step: int | None = None,
    top: int = 3,
    flagged: bool = False,
    top_reward: bool = False,
    console: Console | None = None,
) -> None:
    """Print one view of a run's rollouts (see the module docstring).

    Raises:
        FileNotFoundError: `run_dir` is not a run directory.
        ValueError: nothing is logged yet, `step` has no scored rollouts, or two views at once.
    """
    if flagged and top_reward:
        raise ValueError("--flagged and --top-reward are two views: choose one")
    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    console = console or Console()
    store = RunStore.open(run_dir)
    try:
        last = store.last_step()
        if last is None:
            raise ValueError(f"run {run_dir} has no logged steps yet")
        if flagged:
            _flagged(console, store, step)
        elif top_reward:
            _top_reward(console, store, step)
        else:
            _best_worst(console, store, last if step is None else step, last, top)
    finally:
        store.close()


def _best_worst(console: Console, store: RunStore, step: int, last: int, top: int) -> None:
    rows = store.rollouts(step)
    scored = [r for r in rows if r["reward"] is not None]
    if not scored:
        raise ValueError(f"step {step} has no scored rollouts (steps 0..{last} are logged)")
    best, worst = best_and_worst(rows, top)
    n_distinct = len({(r["task_id"], r["completion"]) for r in scored})
    for title, chosen in (("best", best), ("worst", worst)):
        console.rule(
            f"step {step}: {title} {len(chosen)} of {n_distinct} distinct scored rollouts "
            f"({len(scored)} in all)"
        )
        for i, r in enumerate(chosen, 1):
            print_rollout(console, i, r)


def _flagged(console: Console, store: RunStore, step: int | None) -> None:
    rows = monitor_flagged(store, limit=10**9)
    if step is not None:
        rows = [r for r in rows if r["step"] == step]
    where = "" if step is None else f" at step {step}"
    console.rule(f"flagged samples{where}: {len(rows)} rollouts a monitor flagged")
    if not rows:
        console.print(
            "No rollout was flagged by a monitor. (`--top-reward` lists the top-reward samples "
            "kept for reading.)"
        )
    for i, r in enumerate(rows, 1):
        print_rollout(console, i, r)


def _top_reward(console: Console, store: RunStore, step: int | None) -> None:
    kept = [f for f in store.flagged(step) if "top_reward" in f["flags"].get("reasons", [])]
    console.rule(f"top-reward samples kept by the monitor: {len(kept)} (not a warning)")
    by_step: dict[int, dict] = {}
    for i, f in enumerate(kept, 1):
        if f["step"] not in by_step:
            by_step[f["step"]] = {(r["group"], r["sample"]): r for r in store.rollouts(f["step"])}
        r = by_step[f["step"]].get((f["group"], f["sample"])) or {
            "step": f["step"], "completion": f["text"], "reward": f["reward"]
        }  # fmt: skip
        print_rollout(console, i, {**r, "flags": f["flags"].get("flags")})
