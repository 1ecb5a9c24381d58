"""Views of a run's stored rollouts shared by the report and `burnish inspect`: distinct
rollouts, the best and worst of a step, and the samples a monitor flagged."""

from __future__ import annotations

from typing import Any

from burnish.store import RunStore


def distinct(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rollouts with distinct (task, completion), first occurrence kept, with a `copies` count."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (str(r.get("task_id")), str(r.get("completion")))
        if key in seen:
            seen[key]["copies"] += 1
        else:
            seen[key] = {**r, "copies": 1}
    return list(seen.values())


def best_and_worst(rows: list[dict[str, Any]], k: int) -> tuple[list[dict], list[dict]]:
    """The `k` best and `k` worst distinct scored rollouts; the two lists do not overlap."""
    scored = sorted(
        distinct([r for r in rows if r["reward"] is not None]),
        key=lambda r: r["reward"],
        reverse=True,
    )
    best = scored[:k]
    worst = scored[len(best) :][-k:][::-1]
    return best, worst


def monitor_flagged(store: RunStore, limit: int) -> list[dict[str, Any]]:
    """Rollouts a monitor flagged (a non-empty flag set, not merely a top reward), joined with
    their stored rollout (prompt, completion, components), the latest first."""
    rows = [f for f in store.flagged() if f["flags"].get("flags")][::-1][:limit]
    by_step: dict[int, dict[tuple[int, int], dict]] = {}
    out = []
    for f in rows:
        if f["step"] not in by_step:
            by_step[f["step"]] = {(r["group"], r["sample"]): r for r in store.rollouts(f["step"])}
        rollout = by_step[f["step"]].get((f["group"], f["sample"]))
        base = rollout or {"step": f["step"], "completion": f["text"], "reward": f["reward"]}
        out.append({**base, "flags": f["flags"]["flags"]})
    return out
