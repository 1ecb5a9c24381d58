"""Frozen float32 LoRA base layers whose large products run through oneDNN instead of BLAS.

torch computes a float32 `F.linear` on a CPU with its BLAS (MKL in the x86 wheels). On AMD
CPUs MKL's sgemm is measured 1.1-1.6x slower than oneDNN's matmul (which the same wheels carry)
at the products of a 34M-parameter model: decode steps of 32 rows and training passes of ~2,000
(docs/performance.md §2). oneDNN costs more per call, so for small products (burnish-tiny's
decode steps) BLAS stays faster: a call goes to oneDNN only when it multiplies at least
`ONEDNN_MIN_MACS` multiply-adds, the crossover measured by ``benchmarks/cpu_matmul.py``, or, in
a product without the input's gradient, when its weight has `ONEDNN_MIN_WEIGHT` elements (a
weight streaming from memory makes oneDNN's kernel the faster one even at a few rows).

`OneDnnLinear` is the base layer of a LoRA projection with a frozen float32 weight (and bias),
swapped in by class like `burnish.models.frozen_base.LoweredLinear`; its weight stays a plain
parameter (saved, merged and loaded as before). Its backward computes the input's gradient
through oneDNN as well; the frozen weight and bias get none. The arithmetic is float32
throughout: only the kernel, and so the order of the sums, differs from `F.linear`.

``lora.base_matmul`` picks the kernel (`BASE_MATMULS`): "auto" uses oneDNN on AMD (and Hygon)
x86 CPUs and BLAS elsewhere (on Intel CPUs MKL is Intel's own tuned path, left as it is),
"onednn" forces it, "blas" keeps `F.linear`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from burnish.config_model import BaseMatmul
from burnish.models.frozen_base import lora_base_layers

__all__ = [
    "BASE_MATMULS",
    "ONEDNN_MIN_MACS",
    "ONEDNN_MIN_WEIGHT",
    "OneDnnLinear",
    "frozen_linear",
    "onednn_available",
    "onednn_linear",
    "onednn_pays",
    "route_base_matmuls",
    "wants_onednn",
]

BASE_MATMULS: tuple[str, ...] = get_args(BaseMatmul)
"""The values of ``lora.base_matmul`` (`burnish.config_model.BaseMatmul`)."""

ONEDNN_MIN_MACS = 1 << 25
"""Products below this many multiply-adds (rows x in x out) stay on BLAS: oneDNN's per-call
cost outweighs its faster kernel below ~8M and evens out by 32M (2-core AMD EPYC,
``benchmarks/cpu_matmul.py``): burnish-tiny stays on BLAS; 34m's MLP decode products and every
training product go to oneDNN (its 512 -> 512 decode products by `ONEDNN_MIN_WEIGHT`)."""

ONEDNN_MIN_WEIGHT = 1 << 18
"""Weights of at least this many elements (512 x 512) go to oneDNN at any row count in no-grad
products: a decode step's weights stream from memory, and there oneDNN's kernel is measured
1.04-2.22x faster than BLAS at 2-36 rows (``benchmarks/cpu_matmul.py``); with the input's gradient
it is not (0.84-0.98 at 512 -> 512), so products with gradient keep the `ONEDNN_MIN_MACS` rule.
burnish-tiny's weights (96 x 384 at most) stay below it."""

_AMD_VENDORS = ("AuthenticAMD", "HygonGenuine")


def onednn_available() -> bool:
    """Whether this torch build carries oneDNN's CPU linear kernel."""
    ops = getattr(torch.ops, "mkldnn", None)
    return bool(torch.backends.mkldnn.is_available()) and hasattr(ops, "_linear_pointwise")


@functools.cache
def _cpu_vendor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("vendor_id"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def wants_onednn(mode: str, vendor: str | None = None) -> bool:
    """Whether ``lora.base_matmul = mode`` routes base layers to oneDNN on this CPU.

    Raises:
        ValueError: on a mode not in `BASE_MATMULS`, or "onednn" where torch has no oneDNN.
    """
    if mode not in BASE_MATMULS:
        raise ValueError(f"unknown lora.base_matmul {mode!r}; allowed: {', '.join(BASE_MATMULS)}")
    if mode == "onednn" and not onednn_available():
        raise ValueError(
            "lora.base_matmul = 'onednn' but this torch build has no oneDNN linear kernel "
            "(torch.backends.mkldnn): use 'auto' or 'blas'"
        )
    vendor = _cpu_vendor() if vendor is None else vendor
    return mode == "onednn" or (mode == "auto" and vendor in _AMD_VENDORS and onednn_available())


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` through oneDNN (float32 CPU tensors, no autograd)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def onednn_pays(x: torch.Tensor, weight: torch.Tensor, *, grad: bool = False) -> bool:
    """Whether oneDNN is the faster kernel for ``x @ weight.T``: the product has
    `ONEDNN_MIN_MACS`, or, without the input's gradient (``grad``), its weight has
    `ONEDNN_MIN_WEIGHT` elements."""
    if x.numel() * weight.shape[0] >= ONEDNN_MIN_MACS:
        return True
    return not grad and weight.numel() >= ONEDNN_MIN_WEIGHT


def frozen_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, onednn: bool
) -> torch.Tensor:
    """A no-grad ``F.linear`` on the kernel a `OneDnnLinear` picks: oneDNN for float32 CPU
    products that `onednn_pays` sends there when ``onednn``, BLAS (``F.linear``) otherwise."""
    if (
        onednn
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and onednn_pays(x, weight)
    ):
        return onednn_linear(x, weight, bias)
    return F.linear(x, weight, bias)


class _FrozenLinear(torch.autograd.Function):
    """``x @ W.T + b`` through oneDNN, differentiable in ``x`` only (W and b are frozen)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # noqa: D102 - torch's Function protocol
        ctx.save_for_backward(weight)
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        (weight,) = ctx.saved_tensors
        # grad_x = grad_out @ W, a linear with the transposed weight: as many multiply-adds as
        # the forward, which `OneDnnLinear` sent here only when they pay
        return onednn_linear(grad_out, weight.t(), None), None, None


class OneDnnLinear(nn.Linear):
    """A frozen float32 `nn.Linear` whose large products run through oneDNN (module doc)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        grad = torch.is_grad_enabled() and x.requires_grad
        if (
            x.dtype != torch.float32
            or w.dtype != torch.float32
            or x.device.type != "cpu"
            or w.requires_grad
            or (b is not None and b.requires_grad)
            or not onednn_pays(x, w, grad=grad)
        ):
            return F.linear(x, w, b)
        if grad:
            return _FrozenLinear.apply(x, w, b)
        return onednn_linear(x, w, b)


def route_base_matmuls(model: nn.Module, mode: str) -> int:
    """Give the frozen float32 base layer of every LoRA projection of ``model`` the
    `OneDnnLinear` forward when `wants_onednn` says so; returns how many were routed.

    In place and idempotent; layers on another device or dtype, or with trainable weights, are
    left alone (and `OneDnnLinear` itself falls back to `F.linear` for such inputs).
    """
    if not wants_onednn(mode):
        return 0
    n = 0
    for base in lora_base_layers(model, (nn.Linear, OneDnnLinear)):
        w = base.weight
        if w.requires_grad or w.dtype != torch.float32 or w.device.type != "cpu":
            continue
        base.__class__ = OneDnnLinear
        n += 1
    return n
