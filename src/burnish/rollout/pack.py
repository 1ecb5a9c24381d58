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


def pack(
    groups: Sequence[Group],
    advantages_P_G: Sequence[Sequence[float | None]],
    *,
    mask_truncated: bool = False,
    pad_id: int = 0,
) -> TrainBatch:
    """Turn groups and their per-rollout advantages into a padded batch.

    Args:
        groups: scored groups of one optimizer step.
        advantages_P_G: one advantage per rollout (None: unscorable, left out).
        mask_truncated: overlong filtering: zero the loss mask of completions that hit the
            token budget (they still took part in the group statistics).
        pad_id: token id for padded slots (masked out; any valid id works).

    Raises:
        ValueError: no rollout is left to train on, or the shapes do not match.
    """
    if len(groups) != len(advantages_P_G):
        raise ValueError(f"{len(groups)} groups but {len(advantages_P_G)} advantage rows")
    rows: list[tuple[list[int], list[int], list[float], float]] = []
    for group, adv_G in zip(groups, advantages_P_G):
        if len(adv_G) != len(group.trajectories):
            raise ValueError(
                f"task {group.task.id!r}: {len(group.trajectories)} trajectories, {len(adv_G)} advantages"
            )
        for traj, adv in zip(group.trajectories, adv_G):
            if adv is None or traj.num_sampled == 0:
                continue
            mask = traj.mask
            if mask_truncated and traj.truncated:
                mask = [0] * len(mask)
            rows.append((traj.tokens, mask, traj.logprobs, float(adv)))
    if not rows:
        raise ValueError("nothing to train on: every rollout was unscorable or empty")

    B, T = len(rows), max(len(r[0]) for r in rows)
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros(B, T)
    old_logp = torch.zeros(B, T)
    for i, (tok, m, lp, _) in enumerate(rows):
        n = len(tok)
        tokens[i, :n] = torch.tensor(tok, dtype=torch.long)
        mask[i, :n] = torch.tensor(m, dtype=torch.float32)
        old_logp[i, :n] = torch.tensor(lp, dtype=torch.float32)
    return TrainBatch(
        tokens_B_T=tokens,
        mask_B_T=mask,
        old_logp_B_T=old_logp,
        advantages_B=torch.tensor([r[3] for r in rows], dtype=torch.float32),
        lengths_B=torch.tensor([len(r[0]) for r in rows], dtype=torch.long),
        num_tokens=float(mask.sum()),
        num_seqs=B,
    )
