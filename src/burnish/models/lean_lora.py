"""PEFT's LoRA linear layer without its per-call bookkeeping, for the one case burnish runs most.

PEFT's `lora.Linear.forward` handles every case (merged, disabled or several active adapters,
per-row adapters, DoRA and other variants, dtype casts, dropout) on every call, through module
calls for the base layer, ``lora_A``, ``lora_B`` and the dropout. On a small model that Python
is a large share of a decode step: at burnish-tiny it is about 25 of the 60 microseconds a LoRA
projection takes for a 64-row decode step (docs/performance.md §2).

`LeanLinear` is a subclass whose `forward` first checks, cheaply, for the plain case: one
active adapter, not merged or disabled, no per-row adapter names or other arguments, no variant
(DoRA ...), identity dropout, a plain `nn.Linear` base in the input's dtype (or a
`burnish.models.frozen_base.LoweredLinear` or `burnish.models.onednn_linear.OneDnnLinear`), no
hooks. It then computes what PEFT computes, ``base(x) + B(A(x)) * scaling``, with the scale and
the sum inside the second LoRA product (``addmm(base(x), A(x), B.T, alpha=scaling)``): one pass
over the layer's output instead of three (a product, a scale, a sum), and one scale fewer in the
backward, which at 34M parameters is 2-3% of a training forward and backward
(docs/performance.md §2). The result is bit-identical to PEFT's when the scaling is a power of
two (burnish's default rank 16 with alpha 32 gives 2); any other scaling is rounded once inside
the product, which moves values by float32 rounding. With PEFT's casts when the adapter's dtype
differs from the input's (a bf16 model and its float32 LoRA weights) it runs PEFT's operations
in PEFT's order, bit for bit; every other case runs PEFT's own `forward`.
`make_lean` swaps the class of a model's LoRA linears in place (their state, parameters and
saved format are untouched; `isinstance` checks still hold).

`merged_lora` is for the decode loop, where the same weights run once per sampled token: inside
it, each plain-case layer over a float32 ``nn.Linear`` or `OneDnnLinear` base runs one product
with the merged weight ``W + scaling * (B @ A)`` (computed once on entry, in one ``addmm``;
PEFT's ``merge_adapter`` rounds the same sum in three steps) instead of three products, a scale
and a sum per call. The base weight is not touched (the merged one is a separate tensor, dropped
on exit), and a call with gradient enabled (training on another thread) still takes the
unmerged path. Sums in a different order round differently: burnish-tiny's sampled logprobs
moved by at most a few 1e-5 (docs/performance.md §2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn
from torch.nn.modules import module as _module

from burnish.models.frozen_base import LoweredLinear
from burnish.models.onednn_linear import OneDnnLinear, frozen_linear

__all__ = [
    "MERGE_MAX_BYTES",
    "LeanLinear",
    "MergedLinear",
    "effective_linear",
    "global_hooks",
    "hooked",
    "make_lean",
    "merged_lora",
]


# base layers the plain case runs without PEFT's forward
_BASES = (nn.Linear, LoweredLinear, OneDnnLinear)


def hooked(m: torch.nn.Module) -> bool:
    """Whether ``m`` runs more or other than its class's forward: forward or backward hooks of
    its own, or a forward set on the instance (as the ``kernels`` library's hub kernels are).
    Code that runs a module's arithmetic without calling it steps aside then."""
    return (
        bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
        or "forward" in m.__dict__
    )


def global_hooks() -> bool:
    """Whether hooks are registered for every module (`torch.nn.modules.module`'s globals)."""
    return bool(
        _module._global_forward_hooks
        or _module._global_forward_pre_hooks
        or _module._global_backward_hooks
        or _module._global_backward_pre_hooks
    )


class LeanLinear(LoraLinear):
    """`peft.tuners.lora.Linear` with a fast path for a single plain adapter (module doc)."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        weights = None if args or kwargs else self._plain_weights(x)
        if weights is None:
            return super().forward(x, *args, **kwargs)
        base, lora_a, lora_b, scaling = weights
        result = F.linear(x, base.weight, base.bias) if type(base) is nn.Linear else base.forward(x)
        if x.dtype != lora_a.weight.dtype:  # PEFT casts the adapter's input, then the sum back
            x = x.to(lora_a.weight.dtype)
        lora_x = F.linear(x, lora_a.weight, lora_a.bias)
        if result.dtype == lora_x.dtype:  # the scale and the sum inside one product (module doc)
            out_2d = torch.addmm(
                result.reshape(-1, result.shape[-1]),
                lora_x.reshape(-1, lora_x.shape[-1]),
                lora_b.weight.t(),
                alpha=scaling,
            )
            return out_2d.view(result.shape)
        out = result + F.linear(lora_x, lora_b.weight) * scaling
        return out if out.dtype == result.dtype else out.to(result.dtype)

    def _plain_weights(self, x: torch.Tensor):
        """(base, lora_A, lora_B, scaling) when the plain case holds for input ``x`` (only its
        dtype is read), else None.

        Reads PEFT's state from the instance and module dicts (``nn.Module.__getattr__`` costs
        more than the rest of the check); a state PEFT no longer keeps there reads as "not
        plain", so a PEFT that changed its layout falls back to its own forward.
        """
        d = self.__dict__
        if d.get("_disable_adapters", True) or d.get("merged_adapters", True):
            return None
        name = d.get("_active_adapter")
        if not isinstance(name, str):
            if not isinstance(name, (list, tuple)) or len(name) != 1:
                return None
            name = name[0]
        mods = d["_modules"]
        lora_a = mods["lora_A"]._modules.get(name)
        lora_b = mods["lora_B"]._modules.get(name)
        dropout = mods["lora_dropout"]._modules.get(name)
        base = mods.get("base_layer")
        if (
            lora_a is None
            or lora_b is None
            or type(dropout) is not torch.nn.Identity
            or type(base) not in _BASES
            or d.get("fan_in_fan_out", True)
            or name in d.get("lora_variant", (name,))
            or lora_b.bias is not None
            or (x.dtype != lora_a.weight.dtype and not d.get("cast_input_dtype_enabled", True))
            or (type(base) is nn.Linear and x.dtype != base.weight.dtype)
            or hooked(base)
            or hooked(lora_a)
            or hooked(lora_b)
            or global_hooks()
        ):
            return None
        return base, lora_a, lora_b, d["scaling"][name]


def make_lean(model: torch.nn.Module) -> int:
    """Give every PEFT LoRA `Linear` of ``model`` the `LeanLinear` forward; returns how many.

    In place, idempotent, and safe on any model (modules of other types are left alone).
    """
    n = 0
    for m in model.modules():
        if type(m) is LoraLinear:
            m.__class__ = LeanLinear
            n += 1
    return n


MERGE_MAX_BYTES = 256 * 2**20
"""Most memory `merged_lora` spends on merged weights; past it the layers run unmerged (at
that size the LoRA products are a small share of a decode step)."""


class MergedLinear(LeanLinear):
    """A `LeanLinear` inside `merged_lora`: one product with its merged weight."""

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        d = self.__dict__
        w = d.get("_merged_weight")
        if w is None or args or kwargs or x.dtype != w.dtype or torch.is_grad_enabled():
            return super().forward(x, *args, **kwargs)
        return frozen_linear(x, w, d["_merged_bias"], d["_merged_onednn"])  # its base's kernel


@contextlib.contextmanager
def merged_lora(model: torch.nn.Module, tokens: int) -> Iterator[int]:
    """Run ``model``'s plain LoRA layers with merged weights for the block (module doc).

    Args:
        model: any module; its `LeanLinear` layers in the plain case with a float32
            ``nn.Linear`` or `OneDnnLinear` base are merged (the merged product runs on the
            kernel the base would pick), every other layer is left as it is.
        tokens: row-tokens the block will run (rows x new tokens): a layer is merged only when
            merging it (``out x in x r`` multiply-adds) costs less than the LoRA products it
            saves (``tokens x r x (in + out)``), and only while the merged weights fit in
            `MERGE_MAX_BYTES`.

    Yields the number of layers merged. Meant for no-grad decoding: the merged weights are
    computed once on entry, so weights changed inside the block are not seen.
    """
    merged: list[MergedLinear] = []
    budget = MERGE_MAX_BYTES
    try:
        with torch.no_grad():
            for m in model.modules():
                if type(m) is not LeanLinear:
                    continue
                plain = m._plain_weights(m.base_layer.weight)
                if plain is None or type(plain[0]) not in (nn.Linear, OneDnnLinear):
                    continue
                base, lora_a, lora_b, scaling = plain
                w = base.weight
                if w.dtype != torch.float32 or lora_a.weight.dtype != w.dtype:
                    continue
                if w.numel() > tokens * sum(w.shape) or w.nbytes > budget:  # (r cancels)
                    continue
                budget -= w.nbytes
                m.__dict__["_merged_weight"] = torch.addmm(
                    w, lora_b.weight, lora_a.weight, alpha=scaling
                )
                m.__dict__["_merged_bias"] = base.bias
                m.__dict__["_merged_onednn"] = type(base) is OneDnnLinear
                m.__class__ = MergedLinear
                merged.append(m)
        yield len(merged)
    finally:
        for m in merged:
            m.__class__ = LeanLinear
            for key in ("_merged_weight", "_merged_bias", "_merged_onednn"):
                m.__dict__.pop(key, None)


def effective_linear(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, bool] | None:
    """``(weight, bias, onednn)`` of the one product ``m`` computes in no-grad code, or None
    when it is not a single product: a plain or `OneDnnLinear` linear, a `MergedLinear` (its
    merged weight), or a LoRA layer whose adapters are disabled (its base layer's). ``onednn``
    says the product runs through oneDNN where that pays (`OneDnnLinear`'s choice)."""
    if type(m) in (nn.Linear, OneDnnLinear):
        return m.weight, m.bias, type(m) is OneDnnLinear
    d = m.__dict__
    if type(m) is MergedLinear and "_merged_weight" in d:
        return d["_merged_weight"], d["_merged_bias"], d["_merged_onednn"]
    if isinstance(m, LoraLinear) and d.get("_disable_adapters") and not d.get("merged_adapters"):
        base = d["_modules"].get("base_layer")
        if type(base) in (nn.Linear, OneDnnLinear) and not hooked(base):
            return base.weight, base.bias, type(base) is OneDnnLinear
    return None
