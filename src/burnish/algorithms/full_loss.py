"""The full policy loss of every variant in `burnish.algorithms.losses.LOSSES`: the variant's
per-token surrogate, then what all variants share: truncated importance weights against the
sampler/trainer mismatch (docs/algorithms.md §17), the high-entropy gate, the aggregation
(docs/algorithms.md §10) with the optimizer step's normalisers, the KL term (docs/algorithms.md
§8) and the entropy bonus (docs/algorithms.md §11).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from burnish.algorithms.inputs import check_inputs, check_needs, zero_padding
from burnish.algorithms.kl import LOG_RATIO_CLAMP, kl_estimate
from burnish.algorithms.losses import LOSSES, LossConfig, _frac
from burnish.algorithms.reduce import aggregate, entropy_gate_threshold, masked_mean, masked_sum

__all__ = ["policy_loss", "tis_weights"]


def _gated(token_loss_B_T, entropy, mask, cfg, threshold, metrics) -> Tensor:
    """The per-token loss with tokens below the entropy gate's threshold zeroed (the "80/20"
    gate); records ``entropy/gate_frac``."""
    if threshold is None:
        threshold = entropy_gate_threshold(entropy, mask, cfg.entropy_gate_quantile)
    gate_B_T = (entropy.detach() >= threshold) & mask
    metrics["entropy/gate_frac"] = _frac(gate_B_T, mask)
    return torch.where(gate_B_T, token_loss_B_T, torch.zeros_like(token_loss_B_T))


def tis_weights(
    old_logp_B_T: Tensor, sampler_logp_B_T: Tensor, mask_B_T: Tensor, level: str, cap: float
) -> Tensor:
    """Truncated importance weights ``[B, T]`` of the sampler's tokens (§17), no gradient.

    ``token``: ``w_t = min(π_old(y_t) / π_sampler(y_t), C)``; ``sequence``: one weight per row,
    ``min(exp(Σ_t log π_old − log π_sampler), C)`` over its valid tokens. Padding gets 0.
    """
    log_r = torch.where(mask_B_T, old_logp_B_T.detach() - sampler_logp_B_T, 0.0)
    if level == "sequence":
        log_r = masked_sum(log_r, mask_B_T, dim=-1)[:, None].expand_as(log_r)
    w = torch.exp(log_r.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)).clamp(max=cap)
    return torch.where(mask_B_T, w, 0.0)


def _kl_and_bonus(cfg, logp, old_logp, ref_logp, entropy, mask, agg, metrics):
    """The KL term ``β · aggregate(KL)`` and the entropy bonus ``−α · aggregate(H)`` (0-dim
    tensors, zero when off); records ``kl/mean`` and ``entropy/mean`` in ``metrics``."""
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    kl_term = bonus = zero
    if ref_logp is not None:
        kl_B_T = kl_estimate(
            logp if cfg.kl_coef > 0 else logp.detach(),
            ref_logp,
            cfg.kl_estimator,
            old_logp=old_logp if cfg.kl_bias_correction else None,
        )
        metrics["kl/mean"] = masked_mean(kl_B_T.detach(), mask)
        if cfg.kl_coef > 0:
            kl_term = cfg.kl_coef * agg(kl_B_T)
    if entropy is not None:
        metrics["entropy/mean"] = masked_mean(entropy.detach(), mask)
        if cfg.entropy_coef != 0:
            bonus = -cfg.entropy_coef * agg(entropy)
    return kl_term, bonus


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    config: LossConfig,
    *,
    ref_logp: Tensor | None = None,
    entropy: Tensor | None = None,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    entropy_threshold: float | Tensor | None = None,
    sampler_logp: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The loss ``L = −J`` of one (micro-)batch for the variant named in ``config``.

    ``L = aggregate(w · gate · ℓ) + β · aggregate(KL) − α · aggregate(H)``, all aggregated with
    the variant's mode and the same normalisers; ``w`` is the truncated importance weight when
    ``config.tis`` is on (else 1). The KL term and entropy bonus are neither gated nor weighted.

    Args:
        logp: ``[B, T]`` log-probabilities of the sampled tokens under the policy (with grad).
        old_logp: ``[B, T]`` log-probabilities under the sampling policy (no grad needed).
        advantages: ``[B]`` one advantage per sequence, or ``[B, T]`` one per token (on-policy
            distillation); padding of a ``[B, T]`` tensor may hold any value. ``gspo`` takes
            ``[B]`` only (its ratio is a sequence's).
        mask: ``[B, T]`` loss mask (bool or 0/1); padding may hold any value, even NaN.
        config: the variant and its knobs.
        ref_logp: ``[B, T]`` reference log-probabilities; needed when ``kl_coef > 0``, used for the
            ``kl/mean`` metric whenever given.
        entropy: ``[B, T]`` policy entropies (keep their graph for the bonus); needed when
            ``entropy_coef != 0`` or the entropy gate is on.
        num_tokens: valid tokens of the whole optimizer step (``None``: this batch's).
        num_seqs: sequences of the whole optimizer step (``None``: this batch's ``B``).
        entropy_threshold: the step's gate threshold from `entropy_gate_threshold` (``None``:
            computed over this batch's valid tokens).
        sampler_logp: ``[B, T]`` the sampler's log-probabilities of the same tokens; needed when
            ``config.tis`` is not ``none``.

    Returns:
        ``(loss, metrics)``: a 0-dim tensor and plain floats ``loss/total``, ``loss/policy``,
        ``loss/kl``, ``loss/entropy_bonus`` (the terms as added to the loss), ``clip/low_frac``,
        ``clip/high_frac``, ``ratio/mean``, ``ratio/max`` (GSPO: of the sequence ratios), plus
        ``kl/mean`` when ``ref_logp`` is given, ``entropy/mean`` when ``entropy`` is given,
        ``entropy/gate_frac`` with the gate, ``clip/dual_frac`` with dual clip,
        ``cispo/capped_frac`` for CISPO, and ``tis/weight_mean``, ``tis/capped_frac`` with the
        importance-sampling correction. Means are over this batch's valid tokens, so under
        micro-batching they are per-micro-batch values; only the loss adds up.

    Raises:
        ValueError: on mismatched shapes, or a missing ``ref_logp`` / ``entropy`` that the config
            needs.
    """
    cfg = config.resolved()
    check_inputs(
        logp,
        old_logp,
        advantages,
        mask,
        ref_logp=ref_logp,
        entropy=entropy,
        sampler_logp=sampler_logp,
    )
    check_needs(cfg, ref_logp, entropy)
    if cfg.tis != "none" and sampler_logp is None:
        raise ValueError(f"tis={cfg.tis!r} needs sampler_logp; got None")
    gated = cfg.entropy_gate_quantile is not None
    mask = mask.bool()
    logp, old_logp = zero_padding(logp, mask), zero_padding(old_logp.detach(), mask)
    ref_logp, entropy = zero_padding(ref_logp, mask), zero_padding(entropy, mask)
    adv = advantages.detach().to(logp.dtype)
    if adv.dim() == 2:  # per-token advantages: padding may hold anything
        adv = zero_padding(adv, mask)

    token_loss_B_T, metrics = LOSSES[cfg.name].fn(logp, old_logp, adv, mask, cfg)
    agg = partial(
        aggregate,
        mask_B_T=mask,
        mode=cfg.aggregation,
        num_tokens=num_tokens,
        num_seqs=num_seqs,
        norm_len=cfg.max_completion_len,
    )
    if gated:
        token_loss_B_T = _gated(token_loss_B_T, entropy, mask, cfg, entropy_threshold, metrics)
    if cfg.tis != "none":
        w_B_T = tis_weights(old_logp, zero_padding(sampler_logp, mask), mask, cfg.tis, cfg.tis_cap)
        token_loss_B_T = w_B_T * token_loss_B_T
        metrics["tis/weight_mean"] = masked_mean(w_B_T, mask)
        metrics["tis/capped_frac"] = _frac(w_B_T >= cfg.tis_cap, mask)

    pg = agg(token_loss_B_T)
    kl_term, bonus = _kl_and_bonus(cfg, logp, old_logp, ref_logp, entropy, mask, agg, metrics)
    loss = pg + kl_term + bonus

    metrics.update({"loss/policy": pg, "loss/kl": kl_term, "loss/entropy_bonus": bonus})
    metrics["loss/total"] = loss
    # one device-to-host transfer for all metrics
    values = torch.stack([v.detach().to(torch.float64) for v in metrics.values()]).tolist()
    return loss, dict(zip(metrics, values))
