"""The numeric test case of algorithms.md §14.1 (float64), with poisoned padding.

``reference_*`` helpers are the closed forms of algorithms.md Appendix A written in numpy (no
autograd), used to check values and gradients at 1e-9 where §14 prints only 6 decimals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

REWARDS = [1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 0.0, 1.0]
LENGTHS = [3, 5, 2, 4, 4, 1, 3, 5]
B, T, G = 8, 5, 4
PAD_LOGP, PAD_OLD, PAD_REF, PAD_H = -5.0, -9.0, -1.0, 7.0

LOGP_OLD = [
    [-1.20, -0.50, -2.00, 0, 0],
    [-0.30, -1.10, -0.70, -2.50, -0.90],
    [-1.60, -0.40, 0, 0, 0],
    [-0.80, -0.20, -1.30, -0.60, 0],
    [-2.10, -0.90, -0.40, -1.50, 0],
    [-0.70, 0, 0, 0, 0],
    [-1.00, -1.80, -0.25, 0, 0],
    [-0.45, -1.35, -0.85, -2.20, -0.15],
]
R_TARGET = [
    [1.50, 1.10, 0.70, 1, 1],
    [1.25, 0.75, 1.00, 1.35, 0.90],
    [0.60, 1.18, 1, 1, 1],
    [1.05, 0.95, 1.30, 0.85, 1],
    [1.40, 0.82, 1.10, 0.65, 1],
    [1.25, 1, 1, 1, 1],
    [0.90, 1.15, 0.70, 1, 1],
    [1.10, 1.27, 0.78, 1.45, 1.00],
]
REF_OFFSET = [
    [0.10, -0.20, 0.05, 0, 0],
    [-0.10, 0.30, 0.00, -0.40, 0.20],
    [0.25, -0.05, 0, 0, 0],
    [0.00, 0.15, -0.30, 0.10, 0],
    [-0.20, 0.10, 0.05, 0.35, 0],
    [0.40, 0, 0, 0, 0],
    [-0.15, 0.20, 0.10, 0, 0],
    [0.05, -0.25, 0.30, -0.10, 0.00],
]
ENTROPY = [
    [0.05, 1.20, 0.30, 0, 0],
    [2.10, 0.02, 0.40, 0.90, 0.10],
    [0.60, 0.01, 0, 0, 0],
    [0.15, 1.70, 0.03, 0.25, 0],
    [0.08, 0.50, 2.60, 0.04, 0],
    [1.10, 0, 0, 0, 0],
    [0.20, 0.07, 0.95, 0, 0],
    [0.35, 0.01, 1.40, 0.06, 0.80],
]
SMALL = [
    [4e-4, 2e-4, -3e-4, 0, 0],
    [1e-3, -2e-4, 1e-4, 3e-4, 4e-4],
    [-6e-4, 2e-4, 0, 0, 0],
    [1e-4, 2e-4, 1e-4, -1e-4, 0],
    [-2e-4, -4e-4, -3e-4, -5e-4, 0],
    [3e-4, 0, 0, 0, 0],
    [1e-4, -1e-4, 2e-4, 0, 0],
    [9e-4, 6e-4, 5e-4, 7e-4, 3e-4],
]


@dataclass
class Case:
    """§14.1 inputs as float64 torch tensors (padding poisoned) plus numpy copies."""

    rewards: torch.Tensor  # [B]
    mask: torch.Tensor  # [B, T] bool
    logp: torch.Tensor  # [B, T]
    logp_old: torch.Tensor
    logp_ref: torch.Tensor
    entropy: torch.Tensor
    logp_small: torch.Tensor
    adv: torch.Tensor  # [B] reference advantages (group std, ddof=1, eps 0)
    adv_none: torch.Tensor  # [B] Dr. GRPO advantages R − mean

    def np(self, name: str) -> np.ndarray:
        return getattr(self, name).detach().numpy().astype(np.float64)

    def leaf(self, name: str = "logp") -> torch.Tensor:
        """A fresh leaf copy of a tensor with requires_grad, for gradient checks."""
        return getattr(self, name).detach().clone().requires_grad_(True)


def build_case() -> Case:
    d = torch.float64
    mask = torch.arange(T)[None, :] < torch.tensor(LENGTHS)[:, None]
    logp_old = torch.tensor(LOGP_OLD, dtype=d)
    logp = logp_old + torch.log(torch.tensor(R_TARGET, dtype=d))
    logp_ref = logp_old + torch.tensor(REF_OFFSET, dtype=d)
    entropy = torch.tensor(ENTROPY, dtype=d)
    logp_small = logp_old + torch.tensor(SMALL, dtype=d)
    for t, v in ((logp, PAD_LOGP), (logp_old, PAD_OLD), (logp_ref, PAD_REF), (entropy, PAD_H)):
        t[~mask] = v
    logp_small[~mask] = PAD_LOGP
    rewards = torch.tensor(REWARDS, dtype=d)
    rg = rewards.view(-1, G)
    mean = rg.mean(1, keepdim=True)
    adv = ((rg - mean) / rg.std(1, keepdim=True)).reshape(-1)
    adv_none = (rg - mean).reshape(-1)
    return Case(rewards, mask, logp, logp_old, logp_ref, entropy, logp_small, adv, adv_none)


# ------------------------------------------------------------------ Appendix A closed forms (numpy)


def agg_weights(c: Case, mode: str, L: float | None = None) -> np.ndarray:
    mask = c.np("mask")
    lengths = mask.sum(1)
    if mode == "token-mean":
        return mask / mask.sum()
    if mode == "seq-mean-token-mean":
        return mask / lengths[:, None] / B
    if mode == "seq-mean-token-sum-norm":
        return mask / (B * L)
    if mode == "seq-mean-token-sum":
        return mask / B
    raise ValueError(mode)


def reference_ppo(c: Case, A: np.ndarray, el: float, eh: float, mode: str, L=None):
    """(loss, dL/dlogp) of the PPO-clip family, Appendix A ``ppo_obj`` + ``agg_weights``."""
    r = np.exp(c.np("logp") - c.np("logp_old"))
    A2 = A[:, None] * np.ones_like(r)
    unc, clp = r * A2, np.clip(r, 1 - el, 1 + eh) * A2
    obj = np.minimum(unc, clp)
    g = np.where(unc <= clp, r * A2, 0.0)
    w = agg_weights(c, mode, L)
    obj = np.where(w > 0, obj, 0.0)
    return -(w * obj).sum(), -w * g


def reference_gspo(c: Case, logp: np.ndarray, A: np.ndarray, el: float, eh: float):
    mask = c.np("mask")
    lengths = mask.sum(1)
    s = np.exp(((logp - c.np("logp_old")) * mask).sum(1) / lengths)
    unc, clp = s * A, np.clip(s, 1 - el, 1 + eh) * A
    gseq = np.where(unc <= clp, A * s, 0.0)
    return -(np.minimum(unc, clp).mean()), -(gseq / lengths / B)[:, None] * mask, s
