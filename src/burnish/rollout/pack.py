"""Pack scored groups into a `TrainBatch`.

The loss mask comes from the stored token segments (1 on sampled tokens, 0 on prompt,
environment and tool tokens), never from re-tokenized text. Unscorable rollouts (advantage None)
and rollouts with no sampled token are left out. Rows are right-padded to the longest sequence
here; the training step trims every micro-batch to its own longest row, so padding never costs a
forward pass over more than one micro-batch's worth of slack.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from burnish.types import Group, TrainBatch


def pack(groups: Sequence[Group], *, mask_truncated: bool = False, pad_id: int = 0) -> TrainBatch:
    """Turn the kept groups, with their advantages, into a padded batch.

    Args:
        groups: a step's groups; those not `kept` are skipped, and so are rollouts whose
            advantage is None (unscorable) or that sampled no token.
        mask_truncated: overlong filtering: zero the loss mask of completions that hit the
            token budget (they still took part in the group statistics).
        pad_id: token id for padded slots (masked out; any valid id works).

    Raises:
        ValueError: a kept group has no advantages, or no rollout is left to train on.
    """
    rows: list[tuple[list[int], list[int], list[float], float]] = []
    for group in groups:
        if not group.kept:
            continue
        if group.advantages is None:
            raise ValueError(f"task {group.task.id!r}: a kept group needs its advantages")
        for traj, adv in zip(group.trajectories, group.advantages, strict=True):
            if adv is None or traj.num_sampled == 0:
                continue
            mask = traj.mask
            if mask_truncated and traj.truncated:
                mask = [0] * len(mask)
            rows.append((traj.tokens, mask, traj.logprobs, float(adv)))
    if not rows:
        raise ValueError("nothing to train on: every rollout was unscorable or empty")

    T = max(len(r[0]) for r in rows)

    def padded(k: int, fill) -> list[list]:  # one tensor from lists, not one per row
        return [[*r[k], *[fill] * (T - len(r[k]))] for r in rows]

    return TrainBatch(
        tokens_B_T=torch.tensor(padded(0, pad_id), dtype=torch.long),
        mask_B_T=torch.tensor(padded(1, 0), dtype=torch.float32),
        sampler_logp_B_T=torch.tensor(padded(2, 0.0), dtype=torch.float32),
        advantages_B=torch.tensor([r[3] for r in rows], dtype=torch.float32),
        lengths_B=torch.tensor([len(r[0]) for r in rows], dtype=torch.long),
    )
