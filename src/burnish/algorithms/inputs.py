"""Input checks and padding hygiene shared by the loss functions (`burnish.algorithms.losses`).

Advantages come as ``[B]`` (one per sequence: GRPO-family rewards) or ``[B, T]`` (one per token:
on-policy distillation, docs/algorithms.md §16); `per_token` gives every variant the ``[B, T]``
view, so a ``[B]`` tensor and its broadcast ``[B, T]`` copy give the same loss and gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from burnish.algorithms.losses import LossConfig

__all__ = ["check_inputs", "check_needs", "per_token", "zero_padding"]


def per_token(adv: Tensor, like_B_T: Tensor) -> Tensor:
    """``[B, T]`` advantages: a ``[B]`` tensor broadcast along T, a ``[B, T]`` one as it is."""
    return adv[:, None].expand_as(like_B_T) if adv.dim() == 1 else adv


def check_inputs(logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, **optional) -> None:
    """Raise ValueError unless every tensor has ``logp``'s ``[B, T]`` shape (advantages: ``[B]``
    or ``[B, T]``)."""
    if logp.dim() != 2:
        raise ValueError(f"logp must be [B, T]; got shape {tuple(logp.shape)}")
    for name, t in {"old_logp": old_logp, "mask": mask, **optional}.items():
        if t is not None and t.shape != logp.shape:
            raise ValueError(
                f"{name} must have logp's shape {tuple(logp.shape)}; got {tuple(t.shape)}"
            )
    if adv.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(
            f"advantages must be [B] = {tuple(logp.shape[:1])} or [B, T] = {tuple(logp.shape)}; "
            f"got {tuple(adv.shape)}"
        )


def zero_padding(x: Tensor | None, mask: Tensor) -> Tensor | None:
    """``x`` with zeros wherever ``mask`` is false (None stays None), selected, never multiplied."""
    return (
        None if x is None else torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device))
    )


def check_needs(cfg: LossConfig, ref_logp: Tensor | None, entropy: Tensor | None) -> None:
    """Raise ValueError when the config needs reference log-probs or entropies it was not given."""
    if cfg.kl_coef > 0 and ref_logp is None:
        raise ValueError(f"kl_coef={cfg.kl_coef} needs ref_logp; got None")
    if (cfg.entropy_coef != 0 or cfg.entropy_gate_quantile is not None) and entropy is None:
        raise ValueError(
            f"entropy_coef={cfg.entropy_coef} / entropy_gate_quantile={cfg.entropy_gate_quantile} "
            "need entropy; got None"
        )
