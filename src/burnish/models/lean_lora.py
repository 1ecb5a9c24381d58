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
hooks. It then computes exactly what PEFT computes, the same operations in the same order
(``base(x) + B(A(x)) * scaling``, with PEFT's casts when the adapter's dtype differs from the
input's, as with a bf16 model and its float32 LoRA weights), so results are bit-identical; every
other case runs PEFT's own `forward`.
`make_lean` swaps the class of a model's LoRA linears in place (their state, parameters and
saved format are untouched; `isinstance` checks still hold).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn
from torch.nn.modules import module as _module

from burnish.models.frozen_base import LoweredLinear
from burnish.models.onednn_linear import OneDnnLinear

__all__ = ["LeanLinear", "make_lean"]


# base layers the plain case runs without PEFT's forward
_BASES = (nn.Linear, LoweredLinear, OneDnnLinear)


def _hooked(m: torch.nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)


def _global_hooks() -> bool:
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
        out = result + F.linear(F.linear(x, lora_a.weight, lora_a.bias), lora_b.weight) * scaling
        return out if out.dtype == result.dtype else out.to(result.dtype)

    def _plain_weights(self, x: torch.Tensor):
        """(base, lora_A, lora_B, scaling) when the plain case holds, else None.

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
            or _hooked(base)
            or _hooked(lora_a)
            or _hooked(lora_b)
            or _global_hooks()
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
