"""GRPO-family losses: GRPO, Dr. GRPO, DAPO, CISPO, GSPO, GSPO-token (docs/algorithms.md §3–§12).

Every loss is ``L = −J`` (minimised). `LOSSES` is the one table of variants: each name maps to a
`Variant` holding a pure function ``(logp, old_logp, advantages, mask, config) -> (ℓ [B, T],
diagnostics)`` and the variant's defaults (clip bounds, aggregation, and for the trainer the
advantage scale and dynamic sampling). Adding a variant is adding one entry. `policy_loss`
(`burnish.algorithms.full_loss`) then applies what all variants share: the high-entropy gate, the aggregation (§10) with the optimizer
step's normalisers, the KL term (§8) and the entropy bonus (§11).

What each variant implements, and how it departs from its paper:

- ``grpo`` (DeepSeekMath): PPO clip on token ratios (`ppo_clip_loss`, shared with ``dr_grpo`` and
  ``dapo``), ``seq-mean-token-mean``. The paper's KL
  (k3, in the loss) is available through ``kl_coef`` but off by default (``kl_coef = 0``, like TRL
  and verl); the paper's ε is unspecified, 0.2 here.
- ``dr_grpo`` (Liu et al. 2025): the same token surrogate, aggregated as
  ``Σ m ℓ / (B · max_completion_len)`` with a constant length (never the padded width). Removing the
  std from the advantages is the caller's choice; the variant's ``advantage_scale = "none"`` is the
  default it proposes (``group_advantages(scale="none")``).
- ``dapo`` (Yu et al. 2025): clip-higher (0.2 / 0.28) and a token-mean over the **whole optimizer
  step**, not per group as the paper's Eq. 8 writes it (the same choice as verl ``token-mean`` and
  TRL ``dapo``). Dynamic sampling (on by default, ``dynamic_sampling = True``) and overlong shaping
  live in `burnish.algorithms.shaping`.
- ``cispo`` (MiniMax-M1): ``ℓ = −sg(clip(r, 1 − ε_low, 1 + ε_high)) · Â · logp``, token-mean. No
  lower bound by default and ``ε_high = 4`` (IS weight capped at 5, the ScaleRL / TRL-recommended
  value); the paper publishes no ε_high. ``eps_high`` is in MiniMax-M1's notation, the cap sits at
  ``1 + eps_high``; TRL's CISPO ``epsilon_high`` is the cap itself (ScaleRL's ε_max = 5), so TRL
  ``epsilon_high = 5`` is burnish ``eps_high = 4``. The loss value contains ``logp`` itself and is
  not a progress measure; only its gradient is meaningful.
- ``gspo`` (Zheng et al. 2025): sequence ratio ``s_i = exp(mean_t log r_{i,t})`` over valid tokens,
  PPO clip on ``s_i`` with the paper's 3e-4 / 4e-4, mean over sequences (the only aggregation it
  accepts). The per-sequence loss is spread over the sequence's valid tokens so that
  ``seq-mean-token-mean`` reproduces ``(1/B) Σ_i ℓ_i`` exactly.
- ``gspo_token``: ``s_{i,t} = sg(s_i) · π_θ / sg(π_θ)`` (value ``s_i``, per-token gradient); with
  one advantage per sequence its value and gradient equal ``gspo``'s.

The KL term is ``β · aggregate(k)`` with the policy term's aggregation; ``kl_bias_correction``
multiplies k3 by the per-token ratio ``π_θ / π_old`` (DeepSeek-V3.2, `burnish.algorithms.kl`).

Shared departures: log-ratios are clamped to ``[−20, 20]`` before ``exp`` (verl); optional dual
clip (verl ``clip_ratio_c``) caps the per-token loss of ``Â < 0`` tokens at ``−Â · c``; padded
positions are replaced by zeros before any arithmetic, so no value in padding (NaN included) can
reach the loss or its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from burnish.algorithms.advantages import SCALES
from burnish.algorithms.inputs import per_token
from burnish.algorithms.kl import (
    BIAS_CORRECTED_ESTIMATORS,
    KL_ESTIMATORS,
    LOG_RATIO_CLAMP,
)
from burnish.algorithms.reduce import (
    AGGREGATIONS,
    masked_mean,
    masked_sum,
)

__all__ = [
    "LOSSES",
    "LossConfig",
    "LossFn",
    "Variant",
    "cispo_loss",
    "gspo_loss",
    "gspo_token_loss",
    "ppo_clip_loss",
]

SEQ_MEAN_TOKEN_MEAN = "seq-mean-token-mean"
TOKEN_MEAN = "token-mean"
SUM_NORM = "seq-mean-token-sum-norm"
TIS_LEVELS = ("none", "token", "sequence")
"""Levels of the truncated importance-sampling correction (`LossConfig.tis`)."""


@dataclass(frozen=True)
class LossConfig:
    """Which GRPO-family loss to use and its knobs. ``None`` fields take the variant's default.

    Use `resolved` to get a copy with every default filled in.
    """

    name: str
    """Variant: a key of `LOSSES` (``grpo``, ``dr_grpo``, ``dapo``, ``cispo``, ``gspo``,
    ``gspo_token``)."""
    eps_low: float | None = None
    """Lower clip: ratios below ``1 − eps_low`` stop the gradient of ``Â < 0`` tokens (CISPO: floor
    of the IS weight)."""
    eps_high: float | None = None
    """Upper clip: ratios above ``1 + eps_high`` stop the gradient of ``Â > 0`` tokens (CISPO: cap
    of the IS weight, at ``1 + eps_high`` as in MiniMax-M1; TRL's ``epsilon_high = 5`` is
    ``eps_high = 4`` here)."""
    kl_coef: float = 0.0
    """β of the KL term added to the loss (needs ``ref_logp``)."""
    kl_estimator: str = "k3"
    """``k1``, ``k2`` or ``k3`` (`burnish.algorithms.kl`)."""
    kl_bias_correction: bool = False
    """Multiply the k3 term by the importance ratio ``π_θ / π_old``, gradient kept (DeepSeek-V3.2's
    estimator, TRL ``use_bias_correction_kl``): unbiased for KL(π_θ‖π_ref) on tokens sampled from
    π_old, with the reverse KL's gradient. Only with ``kl_estimator="k3"``."""
    aggregation: str | None = None
    """``token-mean``, ``seq-mean-token-mean``, ``seq-mean-token-sum-norm`` or
    ``seq-mean-token-sum``."""
    max_completion_len: int | None = None
    """The constant length of ``seq-mean-token-sum-norm`` (Dr. GRPO's ``L_max``)."""
    dual_clip: float | None = None
    """Dual-clip constant ``c > 1``: the loss of an ``Â < 0`` token is capped at ``−Â · c``."""
    entropy_coef: float = 0.0
    """α of the entropy bonus ``−α · aggregate(H)`` (needs ``entropy``)."""
    entropy_gate_quantile: float | None = None
    """High-entropy gate ("80/20"): train only on tokens whose entropy is at least this quantile of
    the step's valid-token entropies; 0.8 keeps the top 20% (needs ``entropy``)."""
    tis: str = "none"
    """Truncated importance sampling against the sampler/trainer mismatch (§17): ``none``,
    ``token`` (each token's policy term times ``min(π_old / π_sampler, tis_cap)``) or
    ``sequence`` (one weight per sequence, ``min(Π_t π_old / π_sampler, tis_cap)``); needs
    ``sampler_logp``."""
    tis_cap: float = 2.0
    """The cap C of the truncated importance weight (``>= 1``)."""

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss name {self.name!r}; allowed: {sorted(LOSSES)}")
        for field in ("eps_low", "eps_high"):
            value = getattr(self, field)
            if value is not None and not value >= 0:
                raise ValueError(f"{field} must be >= 0 (or None for the default); got {value}")
        if not self.kl_coef >= 0:
            raise ValueError(f"kl_coef must be >= 0; got {self.kl_coef}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(
                f"unknown kl_estimator {self.kl_estimator!r}; allowed: {sorted(KL_ESTIMATORS)}"
            )
        if self.kl_bias_correction and self.kl_estimator not in BIAS_CORRECTED_ESTIMATORS:
            raise ValueError(
                f"kl_bias_correction applies only to kl_estimator "
                f"{list(BIAS_CORRECTED_ESTIMATORS)}; got {self.kl_estimator!r}"
            )
        if not math.isfinite(self.entropy_coef):
            raise ValueError(f"entropy_coef must be finite; got {self.entropy_coef}")
        variant = LOSSES[self.name]
        if self.aggregation is not None and self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"unknown aggregation {self.aggregation!r}; allowed: {sorted(AGGREGATIONS)}"
            )
        aggregation = self.aggregation or variant.aggregation
        if aggregation not in variant.aggregations:
            raise ValueError(
                f"loss {self.name!r} cannot use aggregation {aggregation!r}; "
                f"allowed: {list(variant.aggregations)}"
            )
        if self.max_completion_len is not None and self.max_completion_len < 1:
            raise ValueError(f"max_completion_len must be >= 1; got {self.max_completion_len}")
        if aggregation == SUM_NORM and self.max_completion_len is None:
            raise ValueError(
                f"aggregation {SUM_NORM!r} (loss {self.name!r}) needs max_completion_len, the fixed "
                "generation budget it divides by; got None"
            )
        if self.dual_clip is not None:
            if not variant.dual_clip:
                raise ValueError(
                    f"dual_clip does not apply to loss {self.name!r}; allowed with: "
                    f"{sorted(n for n, v in LOSSES.items() if v.dual_clip)}"
                )
            if not self.dual_clip > 1:
                raise ValueError(f"dual_clip must be > 1 (or None); got {self.dual_clip}")
        q = self.entropy_gate_quantile
        if q is not None and not 0 < q < 1:
            raise ValueError(f"entropy_gate_quantile must be in the open interval (0, 1); got {q}")
        if self.tis not in TIS_LEVELS:
            raise ValueError(f"unknown tis {self.tis!r}; allowed: {list(TIS_LEVELS)}")
        if not self.tis_cap >= 1:
            raise ValueError(f"tis_cap must be >= 1; got {self.tis_cap}")

    def resolved(self) -> LossConfig:
        """A copy with ``eps_low``, ``eps_high`` and ``aggregation`` set to concrete values."""
        v = LOSSES[self.name]
        return replace(
            self,
            eps_low=v.eps_low if self.eps_low is None else self.eps_low,
            eps_high=v.eps_high if self.eps_high is None else self.eps_high,
            aggregation=self.aggregation or v.aggregation,
        )


LossFn = Callable[[Tensor, Tensor, Tensor, Tensor, LossConfig], tuple[Tensor, dict[str, Tensor]]]
"""``(logp_B_T, old_logp_B_T, adv, mask_B_T, resolved_config) -> (ℓ_B_T, metrics)``; ``adv`` is
``[B]`` (one per sequence) or ``[B, T]`` (one per token, padding zeroed)."""


@dataclass(frozen=True)
class Variant:
    """One loss variant: its per-token surrogate and what it uses when a `LossConfig` field is
    ``None``. Adding a variant is adding one entry to `LOSSES`."""

    fn: LossFn
    """The per-token surrogate ``ℓ [B, T]`` and its diagnostics (see `LossFn`)."""
    eps_low: float
    """Default lower clip ε (``math.inf``: no lower bound)."""
    eps_high: float
    """Default upper clip ε: the clip is at ``1 + eps_high``. For CISPO this is MiniMax-M1's
    ``ε^IS_high`` (IS weight capped at ``1 + eps_high``; the default 4.0 caps it at 5), whereas
    TRL's CISPO ``epsilon_high`` is the cap itself (ScaleRL's ε_max = 5): TRL ``epsilon_high = 5``
    is burnish ``eps_high = 4``."""
    aggregation: str
    """Default aggregation mode (a key of `burnish.algorithms.reduce.AGGREGATIONS`)."""
    aggregations: tuple[str, ...] = tuple(AGGREGATIONS)
    """Aggregation modes this variant can be combined with."""
    dual_clip: bool = True
    """Whether a dual clip (`LossConfig.dual_clip`) makes sense for this variant."""
    advantage_scale: str = "group"
    """Default advantage scaling for the trainer (a key of
    `burnish.algorithms.advantages.SCALES`): ``none`` for Dr. GRPO, ``group`` otherwise."""
    dynamic_sampling: bool = False
    """Whether the trainer drops zero-variance groups and tops the batch up by default (DAPO)."""

    def __post_init__(self) -> None:
        for field in ("eps_low", "eps_high"):
            value = getattr(self, field)
            if not value >= 0:
                raise ValueError(f"Variant.{field} must be >= 0; got {value}")
        if (
            not set(self.aggregations) <= set(AGGREGATIONS)
            or self.aggregation not in self.aggregations
        ):
            raise ValueError(
                f"Variant.aggregation {self.aggregation!r} must be in Variant.aggregations "
                f"{list(self.aggregations)}, a subset of {sorted(AGGREGATIONS)}"
            )
        if self.advantage_scale not in SCALES:
            scale = self.advantage_scale
            raise ValueError(
                f"unknown Variant.advantage_scale {scale!r}; allowed: {sorted(SCALES)}"
            )


# ----------------------------------------------------------------------------- shared pieces


def _frac(flags_B_T: Tensor, mask_B_T: Tensor) -> Tensor:
    return (flags_B_T & mask_B_T).sum() / mask_B_T.sum().clamp(min=1)


def _log_ratio(logp_B_T: Tensor, old_logp_B_T: Tensor) -> Tensor:
    return (logp_B_T - old_logp_B_T).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def _clipped_surrogate(ratio: Tensor, adv: Tensor, cfg: LossConfig) -> Tensor:
    """Per-element PPO loss ``max(−Â r, −Â clip(r))``, with the optional dual clip for ``Â < 0``."""
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - cfg.eps_low, 1.0 + cfg.eps_high)
    # On ties take the unclipped branch: inside the trust region the full gradient flows through it.
    loss = torch.where(clipped > unclipped, clipped, unclipped)
    if cfg.dual_clip is not None:
        capped = torch.minimum(loss, -adv * cfg.dual_clip)
        loss = torch.where(adv < 0, capped, loss)
    return loss


def _clip_metrics(ratio: Tensor, adv: Tensor, mask: Tensor, cfg: LossConfig) -> dict[str, Tensor]:
    """Fractions of valid tokens whose gradient the clip (or dual clip) removes."""
    low = (adv < 0) & (ratio < 1.0 - cfg.eps_low)
    high = (adv > 0) & (ratio > 1.0 + cfg.eps_high)
    metrics = {"clip/low_frac": _frac(low, mask), "clip/high_frac": _frac(high, mask)}
    if cfg.dual_clip is not None:
        metrics["clip/dual_frac"] = _frac((adv < 0) & (ratio > cfg.dual_clip), mask)
    return metrics


def _ratio_metrics(ratio_B_T: Tensor, mask_B_T: Tensor) -> dict[str, Tensor]:
    valid_max = torch.where(mask_B_T, ratio_B_T, torch.zeros_like(ratio_B_T)).max()
    return {"ratio/mean": masked_mean(ratio_B_T, mask_B_T), "ratio/max": valid_max}


# ----------------------------------------------------------------------------- the variants


def ppo_clip_loss(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, cfg: LossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clip on token ratios, ``max(−Â r, −Â clip(r, 1 − ε_low, 1 + ε_high))`` per token ``[B, T]``.

    The surrogate of ``grpo``, ``dr_grpo`` and ``dapo``: the three differ only in their `Variant`
    defaults (clip bounds, aggregation, advantage scale, dynamic sampling), not in this function.
    """
    ratio_B_T = torch.exp(_log_ratio(logp, old_logp))
    adv_B_T = per_token(adv, ratio_B_T)
    loss_B_T = _clipped_surrogate(ratio_B_T, adv_B_T, cfg)
    r = ratio_B_T.detach()
    return loss_B_T, {**_clip_metrics(r, adv_B_T, mask, cfg), **_ratio_metrics(r, mask)}


def cispo_loss(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, cfg: LossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO: ``−sg(clip(r, 1 − ε_low, 1 + ε_high)) · Â · logp``; every token keeps its gradient.

    The stop-gradient is applied after clipping: differentiating through ``r`` as well would give
    ``−Â r (1 + logp)``, which depends on the absolute log-probability (a bug, not CISPO).
    """
    ratio_B_T = torch.exp(_log_ratio(logp, old_logp)).detach()
    weight_B_T = ratio_B_T.clamp(1.0 - cfg.eps_low, 1.0 + cfg.eps_high)
    loss_B_T = -weight_B_T * per_token(adv, logp) * logp
    capped = _frac(ratio_B_T > 1.0 + cfg.eps_high, mask)
    metrics = {
        "clip/low_frac": _frac(ratio_B_T < 1.0 - cfg.eps_low, mask),
        "clip/high_frac": capped,
        "cispo/capped_frac": capped,
        **_ratio_metrics(ratio_B_T, mask),
    }
    return loss_B_T, metrics


def _seq_log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """``[B]`` mean token log-ratio over each sequence's valid tokens (0 for an empty row)."""
    lengths_B = mask.sum(-1).clamp(min=1)
    mean_B = masked_sum(logp - old_logp, mask, dim=-1) / lengths_B
    return mean_B.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)


def _gspo_metrics(s_B: Tensor, adv: Tensor, mask: Tensor, cfg: LossConfig) -> dict[str, Tensor]:
    """Clip fractions counted in tokens (tokens of clipped sequences / valid tokens); ratio
    statistics over the non-empty sequences' ``s_i``."""
    s_B_T = s_B.detach()[:, None].expand_as(mask)
    adv_B_T = per_token(adv, mask)
    has_tokens_B = mask.any(-1)
    s = s_B.detach()
    ratio = {
        "ratio/mean": masked_mean(s, has_tokens_B),
        "ratio/max": torch.where(has_tokens_B, s, torch.zeros_like(s)).max(),
    }
    return {**_clip_metrics(s_B_T, adv_B_T, mask, cfg), **ratio}


def gspo_loss(
    logp: Tensor, old_logp: Tensor, adv_B: Tensor, mask: Tensor, cfg: LossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO: PPO clip on the length-normalised sequence ratio ``s_i``; ``ℓ_i`` on every valid token.

    Takes ``[B]`` advantages only: one sequence ratio pairs with one sequence advantage (use
    ``gspo_token`` for per-token advantages, as the GSPO paper proposes).
    """
    if adv_B.dim() != 1:
        raise ValueError(
            f"loss 'gspo' needs [B] advantages (one per sequence); got shape "
            f"{tuple(adv_B.shape)}: use 'gspo_token' for per-token advantages"
        )
    s_B = torch.exp(_seq_log_ratio(logp, old_logp, mask))
    loss_B = _clipped_surrogate(s_B, adv_B, cfg)
    return loss_B[:, None].expand_as(logp), _gspo_metrics(s_B, adv_B, mask, cfg)


def gspo_token_loss(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, cfg: LossConfig
) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO-token: ``s_{i,t} = sg(s_i) · exp(logp − sg(logp))``, clipped per token; takes
    ``[B]`` or ``[B, T]`` advantages."""
    s_B = torch.exp(_seq_log_ratio(logp, old_logp, mask)).detach()
    s_B_T = s_B[:, None] * torch.exp(logp - logp.detach())
    adv_B_T = per_token(adv, logp)
    return _clipped_surrogate(s_B_T, adv_B_T, cfg), _gspo_metrics(s_B, adv, mask, cfg)


LOSSES: dict[str, Variant] = {
    "grpo": Variant(ppo_clip_loss, 0.2, 0.2, SEQ_MEAN_TOKEN_MEAN),
    "dr_grpo": Variant(ppo_clip_loss, 0.2, 0.2, SUM_NORM, advantage_scale="none"),
    "dapo": Variant(ppo_clip_loss, 0.2, 0.28, TOKEN_MEAN, dynamic_sampling=True),
    "cispo": Variant(cispo_loss, math.inf, 4.0, TOKEN_MEAN, dual_clip=False),
    "gspo": Variant(gspo_loss, 3e-4, 4e-4, SEQ_MEAN_TOKEN_MEAN, (SEQ_MEAN_TOKEN_MEAN,)),
    "gspo_token": Variant(gspo_token_loss, 3e-4, 4e-4, SEQ_MEAN_TOKEN_MEAN, (SEQ_MEAN_TOKEN_MEAN,)),
}
"""The loss variants by name: the only list of names, each with its function and defaults."""
