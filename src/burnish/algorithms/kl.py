"""Per-token KL estimators between the policy and the reference (algorithms.md §8).

With ``δ = logp − ref_logp`` on the sampled token:

- ``k1 = δ``: unbiased for KL(π‖π_ref) but high variance and often negative; as a loss term its
  expected gradient is zero, so it regularises nothing.
- ``k2 = δ² / 2``: biased, low variance, ``≥ 0``; its expected gradient is ∇KL(π‖π_ref).
- ``k3 = e^{−δ} − 1 + δ``: unbiased, low variance, ``≥ 0`` (DeepSeekMath's estimator, TRL and verl
  default); as a loss term its expected gradient is ∇KL(π_ref‖π), the *forward* KL.

Departure from the plain formulas: ``δ`` is clamped to ``[−20, 20]`` before ``exp`` (as verl does)
so that a far-off reference cannot overflow; the estimate is not clamped further.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["KL_ESTIMATORS", "LOG_RATIO_CLAMP", "kl_estimate"]

LOG_RATIO_CLAMP = 20.0
"""Log-ratios are clamped to ``[-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP]`` before ``exp``."""


def _k1(delta: Tensor) -> Tensor:
    return delta


def _k2(delta: Tensor) -> Tensor:
    return 0.5 * delta.square()


def _k3(delta: Tensor) -> Tensor:
    return torch.exp(-delta) - 1.0 + delta


KL_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {"k1": _k1, "k2": _k2, "k3": _k3}


def kl_estimate(logp: Tensor, ref_logp: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token KL estimate from the sampled tokens' log-probabilities.

    Args:
        logp: ``[B, T]`` log-probabilities under the policy (carries the gradient).
        ref_logp: ``[B, T]`` log-probabilities under the reference policy (same temperature).
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.

    Returns:
        ``[B, T]`` per-token estimates; the caller masks and aggregates them.

    Raises:
        ValueError: on an unknown estimator or mismatched shapes.
    """
    try:
        fn = KL_ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(
            f"unknown kl estimator {estimator!r}; allowed: {sorted(KL_ESTIMATORS)}"
        ) from None
    if logp.shape != ref_logp.shape:
        raise ValueError(
            f"logp {tuple(logp.shape)} and ref_logp {tuple(ref_logp.shape)} must have the same shape"
        )
    delta = (logp - ref_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return fn(delta)
