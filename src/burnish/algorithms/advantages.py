"""Group-relative advantages (docs/algorithms.md §9).

For a group ``g`` of ``G`` completions of one prompt with rewards ``R_{g,1..G}``:

- ``group`` (GRPO, DAPO, CISPO, GSPO): ``Â_i = (R_i − μ_g) / (σ_g + eps)``
- ``batch`` ("Lite PPO", ScaleRL): ``Â_i = (R_i − μ_g) / (σ_B + eps)``, σ_B over all rewards of the batch
- ``none`` (Dr. GRPO): ``Â_i = R_i − μ_g``

Standard deviations are unbiased (``ddof = 1``), as in TRL and verl. Departures and additions:

- A group whose valid rewards are all equal gets exactly 0 (not a rounding residue divided by
  ``eps``), whatever the scale; so does a group of size 1 (verl instead passes the raw reward through
  for ``G = 1``; a lone sample has no baseline, so burnish gives it no signal).
- Unscorable rewards are NaN (a judge or verifier that could not score, ``Score(None)`` upstream):
  they are left out of the group's mean and std (and of the batch std) and get advantage 0, so they
  add no gradient. This matches TRL's handling of completions for which every reward function
  returned None. A group with fewer than two scorable rewards is all zeros.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["SCALES", "group_advantages"]


def _unbiased_std(centered: Tensor, valid: Tensor, dim: int | None) -> Tensor:
    """Unbiased std of already-centred values; 0 where fewer than two values are valid."""
    sq = torch.where(valid, centered, torch.zeros_like(centered)).square()
    if dim is None:
        n, total = valid.sum(), sq.sum()
    else:
        n, total = valid.sum(dim, keepdim=True), sq.sum(dim, keepdim=True)
    return torch.sqrt(total / (n - 1).clamp(min=1).to(centered.dtype))


def _denom_group(rewards_P_G: Tensor, centered_P_G: Tensor, valid_P_G: Tensor) -> Tensor:
    return _unbiased_std(centered_P_G, valid_P_G, dim=-1)  # [P, 1]


def _denom_batch(rewards_P_G: Tensor, centered_P_G: Tensor, valid_P_G: Tensor) -> Tensor:
    # σ_B is the std of the raw rewards over the whole batch, not of the group-centred values.
    zero = torch.zeros_like(rewards_P_G)
    mean = torch.where(valid_P_G, rewards_P_G, zero).sum() / valid_P_G.sum().clamp(min=1)
    return _unbiased_std(rewards_P_G - mean, valid_P_G, dim=None)  # []


def _denom_none(rewards_P_G: Tensor, centered_P_G: Tensor, valid_P_G: Tensor) -> None:
    return None


SCALES: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor | None]] = {
    "group": _denom_group,
    "batch": _denom_batch,
    "none": _denom_none,
}
"""Advantage scale -> function giving the std to divide by (``None``: no division)."""


def group_advantages(rewards_P_G: Tensor, scale: str = "group", eps: float = 1e-6) -> Tensor:
    """Advantages of ``P`` prompts × ``G`` completions, centred within each group.

    Args:
        rewards_P_G: ``[P, G]`` float rewards, one row per prompt; NaN marks an unscorable
            completion (excluded from the statistics, advantage 0).
        scale: ``"group"`` (divide by the group's std), ``"batch"`` (by the std of all rewards) or
            ``"none"`` (Dr. GRPO: only centre).
        eps: added to the std before dividing (verl uses 1e-6, TRL 1e-4; 0 gives the exact
            reference values of docs/algorithms.md §14.2).

    Returns:
        ``[P, G]`` advantages in the rewards' dtype; exact zeros for all-equal groups, groups with
        fewer than two scorable rewards, and unscorable entries. Never NaN.

    Raises:
        ValueError: on a tensor that is not 2-D floating point, an unknown scale or a negative eps.
    """
    if rewards_P_G.dim() != 2 or not rewards_P_G.is_floating_point():
        raise ValueError(
            f"rewards_P_G must be a 2-D float tensor [P, G]; got dtype={rewards_P_G.dtype}, "
            f"shape={tuple(rewards_P_G.shape)}"
        )
    try:
        denom_fn = SCALES[scale]
    except KeyError:
        raise ValueError(f"unknown advantage scale {scale!r}; allowed: {sorted(SCALES)}") from None
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0; got {eps}")

    valid_P_G = ~torch.isnan(rewards_P_G)
    zero = torch.zeros_like(rewards_P_G)
    n_P1 = valid_P_G.sum(-1, keepdim=True)
    mean_P1 = torch.where(valid_P_G, rewards_P_G, zero).sum(-1, keepdim=True) / n_P1.clamp(min=1)
    centered_P_G = torch.where(valid_P_G, rewards_P_G - mean_P1, zero)

    denom = denom_fn(rewards_P_G, centered_P_G, valid_P_G)
    adv_P_G = centered_P_G if denom is None else centered_P_G / (denom + eps)

    # All-equal (or < 2 scorable) groups: exact zeros, even where rounding left a residue in the
    # mean or eps = 0 made 0 / 0.
    big = torch.full_like(rewards_P_G, float("inf"))
    hi_P1 = torch.where(valid_P_G, rewards_P_G, -big).amax(-1, keepdim=True)
    lo_P1 = torch.where(valid_P_G, rewards_P_G, big).amin(-1, keepdim=True)
    informative_P1 = (hi_P1 > lo_P1) & (n_P1 >= 2)
    return torch.where(informative_P1 & valid_P_G, adv_P_G, zero)
