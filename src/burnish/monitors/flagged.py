"""Pick the rollouts of a step a person should read: the top rewards and the most flagged.

Online detectors audit hacking better than they warn of it (docs/judges_and_hacking.md §3.2), so the
monitor also keeps, every step, the samples most likely to show what the policy is doing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from burnish.monitors.config import MonitorConfig
from burnish.monitors.features import RolloutFeatures, rollout_flags
from burnish.monitors.records import FlaggedSample


def flags_of(feats_P_G: Sequence[Sequence[RolloutFeatures]], cfg: MonitorConfig) -> list[list]:
    """Per-rollout flags (see `rollout_flags`), indexed `[group][rollout]`."""
    lengths = [f.length for g in feats_P_G for f in g]
    median = float(np.median(lengths)) if lengths else 0.0
    return [[rollout_flags(f, median, cfg) for f in g] for g in feats_P_G]


def select_flagged(
    step: int,
    task_ids_P: Sequence[str],
    feats_P_G: Sequence[Sequence[RolloutFeatures]],
    flags_P_G: Sequence[Sequence[dict]],
    cfg: MonitorConfig,
) -> tuple[FlaggedSample, ...]:
    """The `cfg.top_k` highest-reward rollouts and the `cfg.flagged_k` most-flagged ones.

    Most-flagged ranks rollouts with at least one flag by number of flags, then by reward (a
    flagged rollout that was also paid is the interesting one). A rollout in both lists appears
    once with both reasons. Ties keep batch order, so the selection is deterministic.
    """
    idx = [(p, g) for p, row in enumerate(feats_P_G) for g in range(len(row))]

    def reward(pg: tuple[int, int]) -> float:
        r = feats_P_G[pg[0]][pg[1]].reward
        return -np.inf if r is None else r

    top = sorted(
        (pg for pg in idx if feats_P_G[pg[0]][pg[1]].reward is not None), key=reward, reverse=True
    )[: cfg.top_k]
    flagged = [pg for pg in idx if flags_P_G[pg[0]][pg[1]]]
    flagged = sorted(
        flagged, key=lambda pg: (len(flags_P_G[pg[0]][pg[1]]), reward(pg)), reverse=True
    )[: cfg.flagged_k]
    reasons: dict[tuple[int, int], list[str]] = {}
    for pg in top:
        reasons.setdefault(pg, []).append("top_reward")
    for pg in flagged:
        reasons.setdefault(pg, []).append("flagged")
    out = []
    for (p, g), why in reasons.items():
        f = feats_P_G[p][g]
        out.append(
            FlaggedSample(
                step=step,
                group_index=p,
                rollout_index=g,
                task_id=task_ids_P[p],
                reward=f.reward,
                flags=dict(flags_P_G[p][g]),
                reasons=tuple(why),
                excerpt=f.completion[: cfg.excerpt_chars],
            )
        )
    return tuple(out)


def example_rollouts(
    flags_P_G: Sequence[Sequence[dict]],
    feats_P_G: Sequence[Sequence[RolloutFeatures]],
    flag: str | None,
    k: int = 3,
) -> tuple[tuple[int, int], ...]:
    """Up to `k` rollouts that show `flag` (highest flag value first); without such a flag, the
    `k` highest-reward rollouts."""
    idx = [(p, g) for p, row in enumerate(feats_P_G) for g in range(len(row))]
    hits = [pg for pg in idx if flag is not None and flag in flags_P_G[pg[0]][pg[1]]]
    if hits:
        hits.sort(key=lambda pg: flags_P_G[pg[0]][pg[1]][flag], reverse=True)
        return tuple(hits[:k])
    scored = [pg for pg in idx if feats_P_G[pg[0]][pg[1]].reward is not None]
    scored.sort(key=lambda pg: feats_P_G[pg[0]][pg[1]].reward, reverse=True)
    return tuple(scored[:k])
