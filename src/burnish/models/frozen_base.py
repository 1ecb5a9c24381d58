"""Frozen LoRA base weights kept in a lower precision, with the activations left as they are.

LoRA never changes the base model's weights, so the adapted layers' weights can be rounded once
to bfloat16 and kept so: their matmuls then run at the bf16 rate (on a CPU with AVX-512 BF16,
2-6x the float32 rate at the 34m benchmark shapes, docs/performance.md §2) and the weights take
half the memory. Everything else stays in the model's dtype: the residual stream, norms, attention
softmax, the LoRA weights and their gradients, the embeddings and the LM head (so the logits,
and the log-probs the loss uses, are not rounded to bf16).

What a layer computes is what ``torch.autocast`` computes for a linear layer, with the weight
cast once instead of at every call: the input is rounded to bf16, the product accumulates in
float32 inside the kernel, and the output, rounded to bf16 as autocast's is, is handed back in
the input's dtype (plus the bias, kept in that dtype). The backward runs the same way, so the gradient that reaches the LoRA
weights of earlier layers went through bf16 matmuls.

`lower_base_precision` converts a PEFT model's adapted base layers in place; the sampler and
the trainer share the modules, so both see the same rounded weights (no sampler/trainer
mismatch from it). burnish never merges an adapter into its base (adapters are saved alone);
merging one into a lowered layer would round the merged weight to bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOWERED_DTYPES", "LoweredLinear", "lora_base_layers", "lower_base_precision"]

LOWERED_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16}
"""The dtypes `lower_base_precision` takes, by their config names."""


class LoweredLinear(nn.Linear):
    """A frozen `nn.Linear` whose weight is stored in a lower precision than its inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.to(self.weight.dtype), self.weight).to(x.dtype)
        return out if self.bias is None else out + self.bias


def lora_base_layers(model: nn.Module, types: tuple[type, ...]):
    """The base layers of ``model``'s LoRA projections whose class is one of ``types``."""
    from peft.tuners.lora import LoraLayer

    for m in model.modules():
        base = getattr(m, "base_layer", None) if isinstance(m, LoraLayer) else None
        if type(base) in types:
            yield base


def lower_base_precision(model: nn.Module, dtype: str) -> int:
    """Store the frozen base weight of every LoRA-adapted `nn.Linear` of ``model`` in ``dtype``.

    In place and idempotent; biases keep their dtype. Returns how many layers were lowered.

    Raises:
        ValueError: on a dtype not in `LOWERED_DTYPES`, or a base weight that is trainable.
    """
    if dtype not in LOWERED_DTYPES:
        raise ValueError(f"unknown base dtype {dtype!r}; allowed: {sorted(LOWERED_DTYPES)}")
    target = LOWERED_DTYPES[dtype]
    n = 0
    for base in lora_base_layers(model, (nn.Linear, LoweredLinear)):
        if base.weight.requires_grad:
            raise ValueError("the base weight of a LoRA layer is trainable: not lowered")
        if base.weight.dtype != target:
            base.weight.data = base.weight.data.to(target)
        base.__class__ = LoweredLinear
        n += 1
    _own_memory(model)
    return n


@torch.no_grad()
def _own_memory(model: nn.Module) -> None:
    """Copy the frozen tensors that were not lowered out of the checkpoint's memory map.

    transformers maps a safetensors checkpoint into memory; reading the base weights to lower
    them makes all of the file's pages resident, and they stay so while any tensor (an
    embedding, a norm) still points into the mapping. Owning those tensors lets it go: at the
    34m benchmark size the process then holds 127 MB less after loading.
    """
    for p in model.parameters():
        if not p.requires_grad and p.dtype not in LOWERED_DTYPES.values():
            p.data = p.data.clone()
    for b in model.buffers():
        b.data = b.data.clone()
