"""How far the sampler's log-probs are from the trainer's, on the tokens the sampler produced.

The sampler (a KV-cache decode loop, or an inference server in another precision) and the
training forward compute the same distribution in different ways; their gap biases the policy
gradient. Measured per token with the sampler as the behaviour policy: ``r = π_train / π_sample``,
the k3 estimate of ``KL(π_sample ‖ π_train)`` is ``r − 1 − log r`` (non-negative, unbiased
under samples from the sampler), and the largest ``r`` shows the worst single token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from burnish.algorithms.kl import LOG_RATIO_CLAMP


def mismatch_sums(
    trainer_logp_B_T: Tensor, sampler_logp_B_T: Tensor, mask_B_T: Tensor
) -> tuple[float, float, float]:
    """Sum of the per-token k3 KL, number of valid tokens, and the largest ratio ``r``.

    Sums (not means) so that micro-batches can be accumulated into a step-wide mean. Padded
    positions (mask 0) take no part, whatever they hold.
    """
    m = mask_B_T.bool()
    log_r = (trainer_logp_B_T.detach() - sampler_logp_B_T).masked_fill(~m, 0.0)
    log_r = log_r.clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP).double()
    k3 = (torch.exp(log_r) - 1 - log_r).masked_fill(~m, 0.0)
    n = float(m.sum())
    ratio_max = float(torch.exp(log_r[m]).max()) if n else float("nan")
    return float(k3.sum()), n, ratio_max
