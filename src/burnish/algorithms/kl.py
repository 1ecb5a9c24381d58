"""Per-token KL estimators between the policy and the reference (docs/algorithms.md §8).

With ``δ = logp − ref_logp`` on the sampled token:

- ``k1 = δ``: unbiased for KL(π‖π_ref) but high variance and often negative; as a loss term its
  expected gradient is zero, so it regularises nothing.
- ``k2 = δ² / 2``: biased, low variance, ``≥ 0``; its expected gradient is ∇KL(π‖π_ref).
- ``k3 = e^{−δ} − 1 + δ``: unbiased, low variance, ``≥ 0`` (DeepSeekMath's estimator, TRL and verl
  default); as a loss term its expected gradient is ∇KL(π_ref‖π), the *forward* KL.

Bias correction (DeepSeek-V3.2, arXiv 2512.02556; TRL ``use_bias_correction_kl``): the tokens are
sampled from π_old, not π, so k3 is multiplied by the importance ratio ``r = π / π_old``
(``kl_estimate(..., old_logp=...)``). Then ``E_{π_old}[r · k3] = KL(π‖π_ref)``: unbiased however far
π has moved from π_old. The ratio is **not** detached (as in TRL): the per-token gradient is
``∇(r · k3) = r · δ · ∇logp``, whose expectation under π_old is ``E_π[δ ∇logp] = ∇KL(π‖π_ref)``,
the *reverse* KL's gradient. This holds on-policy too: with ``old_logp = sg(logp)`` the value is
plain k3 but the gradient per token is ``δ`` instead of k3's ``1 − e^{−δ}``. The correction is
defined for k3 only (it is DeepSeek-V3.2's estimator; TRL has no other): ``r · k2`` is an unbiased
estimate of neither KL, and ``r · k1``, unbiased too, keeps k1's high variance and is not the
estimator the option names, so both are refused.

Departures: ``δ`` and ``log r`` are clamped to ``[−20, 20]`` before ``exp`` (as verl does) so that a
far-off reference or policy cannot overflow; the estimate is not clamped further. TRL multiplies by
its ``coef_1``, which under sequence-level importance sampling (GSPO) is the sequence ratio; burnish
always uses the per-token ratio, as DeepSeek-V3.2's formula writes it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["BIAS_CORRECTED_ESTIMATORS", "KL_ESTIMATORS", "LOG_RATIO_CLAMP", "kl_estimate"]

LOG_RATIO_CLAMP = 20.0
"""Log-ratios are clamped to ``[-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP]`` before ``exp``."""


def _k1(delta: Tensor) -> Tensor:
    return delta


def _k2(delta: Tensor) -> Tensor:
    return 0.5 * delta.square()


def _k3(delta: Tensor) -> Tensor:
    return torch.exp(-delta) - 1.0 + delta


KL_ESTIMATORS: dict[str, Callable[[Tensor], Tensor]] = {"k1": _k1, "k2": _k2, "k3": _k3}

BIAS_CORRECTED_ESTIMATORS: tuple[str, ...] = ("k3",)
"""Estimators that `kl_estimate` can multiply by the importance ratio (``old_logp`` given)."""


def kl_estimate(
    logp: Tensor, ref_logp: Tensor, estimator: str = "k3", *, old_logp: Tensor | None = None
) -> Tensor:
    """Per-token KL estimate from the sampled tokens' log-probabilities.

    Args:
        logp: ``[B, T]`` log-probabilities under the policy (carries the gradient).
        ref_logp: ``[B, T]`` log-probabilities under the reference policy (same temperature).
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.
        old_logp: ``[B, T]`` log-probabilities under the sampling policy. When given, the estimate is
            multiplied by the importance ratio ``exp(logp − old_logp)``, gradient kept (the
            bias-corrected k3 of DeepSeek-V3.2); only for the `BIAS_CORRECTED_ESTIMATORS`.

    Returns:
        ``[B, T]`` per-token estimates; the caller masks and aggregates them.

    Raises:
        ValueError: on an unknown estimator, a bias correction of an estimator other than k3, or
            mismatched shapes.
    """
    try:
        fn = KL_ESTIMATORS[estimator]
    except KeyError:
        raise ValueError(
            f"unknown kl estimator {estimator!r}; allowed: {sorted(KL_ESTIMATORS)}"
        ) from None
    for name, other in (("ref_logp", ref_logp), ("old_logp", old_logp)):
        if other is not None and other.shape != logp.shape:
            raise ValueError(
                f"logp {tuple(logp.shape)} and {name} {tuple(other.shape)} must have the same shape"
            )
    delta_B_T = (logp - ref_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    kl_B_T = fn(delta_B_T)
    if old_logp is None:
        return kl_B_T
    if estimator not in BIAS_CORRECTED_ESTIMATORS:
        raise ValueError(
            f"the importance-ratio bias correction applies only to kl estimator "
            f"{list(BIAS_CORRECTED_ESTIMATORS)}; got {estimator!r}"
        )
    ratio_B_T = torch.exp((logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    return kl_B_T * ratio_B_T


def kl_from_logits(logits_p_N_V: Tensor, logits_q_N_V: Tensor, temperature: float = 1.0) -> Tensor:
    """Exact ``KL(p ‖ q) = Σ_v p_v (log p_v − log q_v)`` over the vocabulary at each of N positions.

    Used for forgetting (`burnish.eval.forgetting`): summed over a sequence's sampled positions it
    is an unbiased, lower-variance estimate of the sequence-level KL than the sampled-token
    log-ratio (the expectation over the next token is taken exactly; only the prefixes are
    sampled). ``≥ 0`` up to float rounding. Returns float32 ``[N]``.
    """
    logp_N_V = torch.log_softmax(logits_p_N_V.float() / temperature, dim=-1)
    logq_N_V = torch.log_softmax(logits_q_N_V.float() / temperature, dim=-1)
    return (logp_N_V.exp() * (logp_N_V - logq_N_V)).sum(-1)
