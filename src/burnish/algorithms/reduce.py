"""Masked reductions and the four loss-aggregation modes (docs/algorithms.md §10).

Given per-token losses ``ℓ [B, T]`` (already negated) and a 0/1 mask:

| mode | loss | per-token gradient weight |
| --- | --- | --- |
| ``token-mean`` (DAPO, CISPO) | ``Σ m ℓ / N`` | ``1 / N`` |
| ``seq-mean-token-mean`` (GRPO, GSPO) | ``(1/B) Σ_i Σ_t m ℓ / |o_i|`` | ``1 / (B |o_i|)`` |
| ``seq-mean-token-sum-norm`` (Dr. GRPO) | ``Σ m ℓ / (B · L_max)`` | ``1 / (B L_max)`` |
| ``seq-mean-token-sum`` | ``(1/B) Σ m ℓ`` | ``1 / B`` |

``N`` (valid tokens) and ``B`` (sequences) are the normalisers of the **whole optimizer step**. Pass
them explicitly when a step is split into micro-batches: the micro-batch losses then add up to the
full-batch loss exactly, so the gradient does not depend on the micro-batch size. Left as ``None``
they default to this batch's own counts (``N = Σ m``, ``B`` = number of rows, fully masked rows
included, as verl and TRL count them). ``|o_i|`` is always the sequence's own valid length, which a
micro-batch sees whole.

Masked positions are selected with ``torch.where`` rather than multiplied by the mask, so a NaN or
inf in a padded slot can never leak into a sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "AGGREGATIONS",
    "aggregate",
    "entropy_gate_threshold",
    "masked_mean",
    "masked_sum",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
    "token_mean",
]


def masked_sum(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``values`` over positions where ``mask`` is true (padding never contributes)."""
    picked = torch.where(
        mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device)
    )
    return picked.sum() if dim is None else picked.sum(dim)


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``values`` over valid positions; 0 where there are none (never NaN).

    Args:
        values: any shape, e.g. ``[B, T]``.
        mask: same shape, bool or 0/1.
        dim: reduce over this dim only; ``None`` reduces over everything.
    """
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1).to(values.dtype)


def _positive(name: str, value: float | Tensor) -> Tensor | float:
    # Tensors are not checked: reading their value would synchronise an accelerator.
    if not isinstance(value, Tensor) and not value > 0:
        raise ValueError(f"{name} must be > 0; got {float(value)}")
    return value


def token_mean(
    loss_B_T: Tensor,
    mask_B_T: Tensor,
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """``Σ m ℓ / num_tokens`` (default: this batch's valid-token count, at least 1)."""
    if num_tokens is None:
        num_tokens = mask_B_T.bool().sum().clamp(min=1)
    return masked_sum(loss_B_T, mask_B_T) / _positive("num_tokens", num_tokens)


def seq_mean_token_mean(
    loss_B_T: Tensor,
    mask_B_T: Tensor,
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """``(1/num_seqs) Σ_i mean_t ℓ_i``; a fully masked row contributes 0 but counts in ``num_seqs``."""
    per_seq_B = masked_mean(loss_B_T, mask_B_T, dim=-1)
    if num_seqs is None:
        num_seqs = max(loss_B_T.shape[0], 1)
    return per_seq_B.sum() / _positive("num_seqs", num_seqs)


def seq_mean_token_sum_norm(
    loss_B_T: Tensor,
    mask_B_T: Tensor,
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """``Σ m ℓ / (num_seqs · norm_len)`` with a constant ``norm_len`` (Dr. GRPO's ``L_max``)."""
    if norm_len is None:
        raise ValueError(
            "seq-mean-token-sum-norm needs norm_len (the fixed max completion length); got None"
        )
    if num_seqs is None:
        num_seqs = max(loss_B_T.shape[0], 1)
    denom = _positive("num_seqs", num_seqs) * _positive("norm_len", norm_len)
    return masked_sum(loss_B_T, mask_B_T) / denom


def seq_mean_token_sum(
    loss_B_T: Tensor,
    mask_B_T: Tensor,
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """``(1/num_seqs) Σ m ℓ``: no length normalisation at all."""
    if num_seqs is None:
        num_seqs = max(loss_B_T.shape[0], 1)
    return masked_sum(loss_B_T, mask_B_T) / _positive("num_seqs", num_seqs)


AggregateFn = Callable[..., Tensor]

AGGREGATIONS: dict[str, AggregateFn] = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum-norm": seq_mean_token_sum_norm,
    "seq-mean-token-sum": seq_mean_token_sum,
}


def aggregate(
    loss_B_T: Tensor,
    mask_B_T: Tensor,
    mode: str,
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    norm_len: float | None = None,
) -> Tensor:
    """Reduce per-token losses to a scalar with one of the `AGGREGATIONS` modes.

    Args:
        loss_B_T: ``[B, T]`` per-token values (padding may hold anything, even NaN).
        mask_B_T: ``[B, T]`` bool or 0/1 loss mask.
        mode: one of ``token-mean``, ``seq-mean-token-mean``, ``seq-mean-token-sum-norm``,
            ``seq-mean-token-sum``.
        num_tokens: valid tokens of the whole optimizer step (``token-mean``); ``None`` = this batch.
        num_seqs: sequences of the whole optimizer step (``seq-mean-*``); ``None`` = this batch.
        norm_len: the constant length of ``seq-mean-token-sum-norm``.

    Returns:
        A 0-dim tensor.

    Raises:
        ValueError: on an unknown mode or a non-positive normaliser.
    """
    try:
        fn = AGGREGATIONS[mode]
    except KeyError:
        raise ValueError(f"unknown aggregation {mode!r}; allowed: {sorted(AGGREGATIONS)}") from None
    return fn(loss_B_T, mask_B_T, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)


def entropy_gate_threshold(entropy: Tensor, mask: Tensor, quantile: float) -> Tensor:
    """The ``quantile`` of the valid tokens' entropies (linear interpolation, as `torch.quantile`).

    Compute it once over the whole optimizer step and pass it to `policy_loss` as
    ``entropy_threshold`` so that every micro-batch uses the same gate.

    Args:
        entropy: ``[B, T]`` per-token entropies (detached here).
        mask: ``[B, T]`` loss mask; padded entries never enter the quantile.
        quantile: in (0, 1); 0.8 keeps the top 20% of tokens.

    Returns:
        0-dim tensor; ``+inf`` when there are no valid tokens (nothing passes the gate).
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in the open interval (0, 1); got {quantile}")
    values, _ = entropy.detach()[mask.bool()].sort()
    n = values.numel()
    if n == 0:
        return torch.tensor(float("inf"), dtype=entropy.dtype, device=entropy.device)
    pos = quantile * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    return values[lo] + (pos - lo) * (values[hi] - values[lo])
