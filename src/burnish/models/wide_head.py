"""The LM head of a large vocabulary, applied to the few rows of a decode step.

A decode step applies the LM head to one position per row: a product of a few rows ``x`` with a
weight of ``V`` rows (151,936 for Qwen's vocabulary). On a CPU, ``F.linear(x, W)`` (which is
``x @ W.T``) ran that product slower than the same product taken the other way round,
``(W @ x.T).T`` made contiguous: 2.6-2.9x at 4 rows, 1.4-1.5x at 32, 1.1-1.3x at 64 (float32
weights of 151,936 x 512, 151,936 x 896 and 32,000 x 512, 2 threads; `benchmarks/wide_head.py`,
docs/performance.md §2). The BLAS call of the first form packs the whole large weight for a
few rows; the second streams it once. At one row the two are within 10%, and at 512 rows the first
is faster (the copy back to a row-major result then costs more than the packing saved).

`WideHead` is an `nn.Linear` subclass whose forward takes the weight-first form where it pays:
float32 on a CPU, 2 to `MAX_ROWS` rows, no gradient to record (sampling and evaluation;
training computes its log-probs through `burnish.models.logprobs.head_logprobs`, whose frozen
path does not call the module). Elsewhere it is ``F.linear``. The two forms agree to float32
rounding (not always bit for bit). `widen_head` swaps the class of a model's output layer in
place when its vocabulary has at least `MIN_VOCAB` tokens; weights, saved format and
``isinstance`` checks are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_ROWS", "MIN_VOCAB", "WideHead", "widen_head"]

MIN_VOCAB = 8192
"""Output layers with at least this many rows become `WideHead` (the threshold of the frozen-head
path in `burnish.models.logprobs`; `benchmarks/wide_head.py` measures vocabularies of 32,000
and 151,936)."""

MAX_ROWS = 64
"""Most rows the weight-first form is used for (1.1-1.3x at 64 rows, slower at 512)."""


class WideHead(nn.Linear):
    """`nn.Linear` computing few-row float32 CPU products as ``(W @ x.T).T`` (module doc)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        w = self.weight
        if not (
            2 <= rows <= MAX_ROWS
            and x.dtype == w.dtype == torch.float32
            and x.device.type == "cpu"
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        ):
            return F.linear(x, w, self.bias)
        out = (w @ x.reshape(rows, x.shape[-1]).T).T
        if self.bias is not None:
            out = out + self.bias
        return out.contiguous().reshape(*x.shape[:-1], self.out_features)


def widen_head(model: nn.Module) -> bool:
    """Make ``model``'s output layer a `WideHead` if it is a plain `nn.Linear` of at least
    `MIN_VOCAB` rows; returns whether the output layer is a `WideHead` now. In place and
    idempotent."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if type(head) is nn.Linear and head.out_features >= MIN_VOCAB:
        head.__class__ = WideHead
    return type(head) is WideHead
