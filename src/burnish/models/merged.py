"""A plain copy of a LoRA policy for sampling, with the adapter folded into its weights.

Sampling runs one forward per token, and through PEFT every adapted projection is three modules
(the base linear, A, B) plus PEFT's own per-call bookkeeping: on a small CPU model that
overhead, not the arithmetic, sets the decode speed. `MergedCopy` is the same network with each
adapted linear replaced by one `nn.Linear` whose weight is ``W + scaling * B @ A``; every other
tensor (embeddings, norms, the LM head, biases) is shared with the policy, not copied, so the
extra memory is one copy of the adapted weights.

The policy is never modified (PEFT's own merge/unmerge would add and subtract the delta in
place, and float rounding makes the base weights drift). The copy is refreshed whenever a LoRA
weight changed since the last refresh (torch's per-tensor version counters see the optimizer's
in-place updates and loaded checkpoints), so a caller cannot forget to sync it. Its logits
equal the PEFT model's up to float rounding (the sum is formed once instead of per token).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["MAX_MERGED_BYTES", "MergedCopy"]

MAX_MERGED_BYTES = 1 << 30
"""Above this many bytes of adapted weights, no copy is made (sampling goes through PEFT)."""


class MergedCopy:
    """The merged copy of `peft_model` (see the module docstring); build with `build`."""

    def __init__(self, peft_model: Any, plain: torch.nn.Module, targets: list) -> None:
        self.peft_model, self.plain, self.targets = peft_model, plain, targets
        self._seen: tuple[int, ...] | None = None

    @classmethod
    def build(cls, peft_model: Any, max_bytes: int = MAX_MERGED_BYTES) -> MergedCopy | None:
        """The copy, or None when the model is not a plain-LoRA PEFT model of linear layers
        (DoRA, embeddings, convolutions, several adapters) or its adapted weights are too big."""
        try:
            from peft.tuners.lora import Linear as LoraLinear
            from peft.tuners.lora import LoraLayer
        except ImportError:
            return None
        if not hasattr(peft_model, "get_base_model"):
            return None
        base = peft_model.get_base_model()
        layers = [(n, m) for n, m in base.named_modules() if isinstance(m, LoraLayer)]
        if not layers or any(type(m) is not LoraLinear or m.lora_variant for _, m in layers):
            return None
        size = sum(m.get_base_layer().weight.nbytes for _, m in layers)
        if size > max_bytes or len(peft_model.peft_config) != 1:
            return None
        shared = {id(t): t for t in [*base.parameters(), *base.buffers()]}
        plain = copy.deepcopy(base, shared)  # new modules around the policy's own tensors
        targets = []
        for name, layer in layers:
            parent, _, attr = name.rpartition(".")
            owner = plain.get_submodule(parent) if parent else plain
            linear = layer.get_base_layer()
            merged = torch.nn.Linear(
                linear.in_features, linear.out_features, bias=False, device=linear.weight.device
            )
            merged.weight = torch.nn.Parameter(torch.empty_like(linear.weight), requires_grad=False)
            merged.bias = linear.bias  # shared
            setattr(owner, attr, merged)
            targets.append((layer, merged))
        plain.eval()
        return cls(peft_model, plain, targets)

    def usable(self) -> bool:
        """Whether the policy samples as its one adapter says (not disabled, not merged)."""
        layer = self.targets[0][0]
        return not layer.disable_adapters and not layer.merged and len(layer.active_adapters) == 1

    @torch.no_grad()
    def refresh(self) -> torch.nn.Module:
        """The plain model, its merged weights recomputed if a LoRA weight changed."""
        seen = tuple((id(t), t._version) for layer, _ in self.targets for t in _lora_tensors(layer))
        if seen != self._seen:
            for layer, merged in self.targets:
                (adapter,) = layer.active_adapters
                delta = layer.get_delta_weight(adapter)
                merged.weight.copy_(layer.get_base_layer().weight + delta.to(merged.weight.dtype))
            self._seen = seen
        return self.plain


def _lora_tensors(layer: Any) -> list[torch.Tensor]:
    (adapter,) = layer.active_adapters
    return [layer.lora_A[adapter].weight, layer.lora_B[adapter].weight]
