"""Reward shaping and batch filtering from DAPO (docs/algorithms.md §5).

- `soft_overlong_penalty`: DAPO Eq. 13, the length penalty that is *added* to the task reward:
  0 up to ``max_len − cache_len`` tokens, then a linear ramp to −1 at ``max_len``, −1 beyond.
- `keep_informative_groups`: dynamic sampling; keep only groups whose rewards are not all equal
  (the others have zero advantage and only dilute the token normaliser).

Departures: the dynamic-sampling filter ignores unscorable (NaN) rewards and requires at least two
distinct scorable rewards; the paper filters on accuracy, so callers should pass the correctness
signal rather than a shaped reward (a length penalty can make an all-correct group look
informative).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["keep_informative_groups", "soft_overlong_penalty"]


def soft_overlong_penalty(length: int, max_len: int, cache_len: int) -> float:
    """DAPO soft overlong punishment for a completion of ``length`` tokens.

    Args:
        length: completion tokens (what was generated, EOS included).
        max_len: ``L_max``, the length at which the penalty reaches −1 (the generation cap).
        cache_len: ``L_cache``, the width of the linear ramp before ``max_len``; 0 means a hard
            step (0 up to ``max_len``, −1 beyond).

    Returns:
        ``0`` if ``length ≤ max_len − cache_len``; ``((max_len − cache_len) − length) / cache_len``
        if ``length ≤ max_len``; ``−1`` otherwise.

    Raises:
        ValueError: on a negative length, ``max_len < 1`` or ``cache_len`` outside ``[0, max_len]``.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0; got {length}")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1; got {max_len}")
    if not 0 <= cache_len <= max_len:
        raise ValueError(f"cache_len must be in [0, max_len={max_len}]; got {cache_len}")
    expected = max_len - cache_len
    if length <= expected:
        return 0.0
    if length <= max_len:
        return (expected - length) / cache_len
    return -1.0


def keep_informative_groups(rewards_P_G: Tensor) -> Tensor:
    """DAPO dynamic sampling: which groups carry a learning signal.

    Args:
        rewards_P_G: ``[P, G]`` float rewards; NaN = unscorable, ignored.

    Returns:
        ``[P]`` bool, true where the group has at least two scorable rewards that differ (non-zero
        reward std).

    Raises:
        ValueError: on a tensor that is not 2-D floating point.
    """
    if rewards_P_G.dim() != 2 or not rewards_P_G.is_floating_point():
        raise ValueError(
            f"rewards_P_G must be a 2-D float tensor [P, G]; got dtype={rewards_P_G.dtype}, "
            f"shape={tuple(rewards_P_G.shape)}"
        )
    valid_P_G = ~torch.isnan(rewards_P_G)
    big = torch.full_like(rewards_P_G, float("inf"))
    hi_P = torch.where(valid_P_G, rewards_P_G, -big).amax(-1)
    lo_P = torch.where(valid_P_G, rewards_P_G, big).amin(-1)
    return (hi_P > lo_P) & (valid_P_G.sum(-1) >= 2)
