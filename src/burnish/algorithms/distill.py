"""On-policy distillation: the per-token reverse KL to a teacher as the advantage (docs/algorithms.md §16).

The student samples; the teacher scores the student's tokens. On a sampled token ``y_t`` the
one-sample estimate of the per-token reverse KL ``KL(π_θ ‖ π_T)`` is
``log π_θ(y_t) − log π_T(y_t)``; its negation is the advantage of that token, so a policy-gradient
step on it lowers the reverse KL (Agarwal et al. 2024, "On-Policy Distillation of Language
Models"; Thinking Machines, "On-Policy Distillation", 2025). Mixed with the environment's reward:

    Â_{i,t} = (1 − λ) · Â_i + λ · (log π_T(y_t) − log π_θ(y_t)),   λ = `algorithm.distill_coef`

How it departs from those write-ups: the student's log-probs are the sampler's (the tokens' own
sampling log-probs, as Tinker's recipe uses), the advantage is not discounted or summed over
later tokens (each token's own term only, as both write-ups do), and it is clamped to
``[−LOG_RATIO_CLAMP, LOG_RATIO_CLAMP]`` so a token the teacher finds impossible cannot dominate a
step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from burnish.algorithms.kl import LOG_RATIO_CLAMP

__all__ = ["distill_advantages", "mix_advantages"]


def distill_advantages(
    student_logp_B_T: Tensor, teacher_logp_B_T: Tensor, mask_B_T: Tensor
) -> Tensor:
    """``[B, T]`` per-token advantages ``log π_T − log π_θ`` on valid tokens, 0 on padding."""
    if student_logp_B_T.shape != teacher_logp_B_T.shape or mask_B_T.shape != student_logp_B_T.shape:
        raise ValueError(
            f"student {tuple(student_logp_B_T.shape)}, teacher {tuple(teacher_logp_B_T.shape)} and "
            f"mask {tuple(mask_B_T.shape)} must have one [B, T] shape"
        )
    diff_B_T = (teacher_logp_B_T.float() - student_logp_B_T.float()).clamp(
        -LOG_RATIO_CLAMP, LOG_RATIO_CLAMP
    )
    return torch.where(mask_B_T.bool(), diff_B_T, torch.zeros_like(diff_B_T))


def mix_advantages(env_adv_B: Tensor, distill_adv_B_T: Tensor, coef: float) -> Tensor:
    """``(1 − coef) · Â_B (broadcast over T) + coef · A_distill_B_T``; ``coef = 1``: distillation
    alone (the environment's advantages are not read, so NaN there is harmless)."""
    if not 0.0 <= coef <= 1.0:
        raise ValueError(f"distill coef must be in [0, 1]; got {coef}")
    if coef == 1.0:
        return distill_adv_B_T.clone()
    return (1.0 - coef) * env_adv_B[:, None].to(distill_adv_B_T.dtype) + coef * distill_adv_B_T
