"""The transformer body of a Llama-layout model run straight from its weights, for training.

A training forward through transformers calls, per layer, the decoder layer, attention, MLP and
norm modules and seven LoRA wrappers (each checking PEFT's state, `burnish.models.lean_lora`),
and routes attention through transformers' mask helpers and attention interface. On a small
model those calls are a measurable share of a step (running without them makes a burnish-tiny
step about 3% faster, docs/performance.md §2). `FastBody` runs the same arithmetic with
autograd, as `burnish.models.fast_decode.FastDecoder` does for a decode step: per layer the two
RMS norms (transformers' operations in their order), each projection as its base product
plus the LoRA product with the scale and the sum inside one ``addmm`` (`LeanLinear`'s
arithmetic), the rotary embedding from the model's own `rotary_emb` module, one
`scaled_dot_product_attention` with the caller's mask, and the residual sums. Hidden states
and LoRA gradients equal those of transformers' SDPA path bit for bit without grouped-query
attention, and to float32 rounding with it (SDPA's ``enable_gqa`` in place of repeated keys;
tests/models/test_fast_body.py).

It takes an explicit boolean attention mask (``[B, 1, S, S]``, True where a query sees a key)
and no cache: it runs `burnish.models.shared_prefix`'s packed layout. `fast_body` returns None,
and the caller runs the model, unless all of this holds: the layout `plain_decoder` and
`plain_block` accept, no attention dropout while training, gradient checkpointing off, and
every projection a float32 ``nn.Linear`` (trainable or not) or a LoRA layer in `LeanLinear`'s
plain case with float32 adapter weights over an ``nn.Linear``, `LoweredLinear` or
`OneDnnLinear` base (the latter two run their own forward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burnish.models.fast_decode import (
    attention_shape,
    plain_block,
    plain_decoder,
    projections,
    rms,
    rotate_half,
)
from burnish.models.lean_lora import LeanLinear, hooked

__all__ = ["FastBody", "fast_body"]


@dataclass(frozen=True)
class _Projection:
    """One projection: its base product, plus a LoRA product when ``lora_a`` is set."""

    base_forward: Callable[[Tensor], Tensor] | None
    """The base layer's forward, or None for ``F.linear`` with ``weight`` and ``bias``."""
    weight: Tensor
    bias: Tensor | None
    lora_a: nn.Linear | None = None
    lora_b: Tensor | None = None
    scaling: float = 1.0

    def __call__(self, x_NH: Tensor) -> Tensor:
        f = self.base_forward
        out = F.linear(x_NH, self.weight, self.bias) if f is None else f(x_NH)
        if self.lora_a is None:
            return out
        lora_x = F.linear(x_NH, self.lora_a.weight, self.lora_a.bias)
        return torch.addmm(out, lora_x, self.lora_b.t(), alpha=self.scaling)


def _projection(m: nn.Module | None, x: Tensor) -> _Projection | None:
    """How `FastBody` runs ``m`` for float32 inputs like ``x``, or None (module doc)."""
    if m is None or hooked(m):
        return None
    if type(m) is nn.Linear:
        return _Projection(None, m.weight, m.bias) if m.weight.dtype == torch.float32 else None
    if type(m) is not LeanLinear:
        return None
    plain = m._plain_weights(x)
    if plain is None:
        return None
    base, lora_a, lora_b, scaling = plain
    if lora_a.weight.dtype != torch.float32 or lora_b.weight.dtype != torch.float32:
        return None
    if type(base) is nn.Linear:
        return _Projection(None, base.weight, base.bias, lora_a, lora_b.weight, scaling)
    return _Projection(base.forward, base.weight, None, lora_a, lora_b.weight, scaling)


class FastBody:
    """The final-normed hidden states of the packed rows (module doc); built per forward by
    `fast_body`, so it reads the model's current weights and adapter state."""

    def __init__(self, model: nn.Module, layers: list[tuple[Tensor, Tensor, list]]) -> None:
        inner, config = model.model, model.config
        self.embed, self.rotary, self.final_norm = inner.embed_tokens, inner.rotary_emb, inner.norm
        self.eps = config.rms_norm_eps
        self.heads, self.kv_heads, self.head_dim = attention_shape(config)
        self.layers = layers

    def __call__(self, tokens_B_S: Tensor, mask_B1SS: Tensor, pos_B_S: Tensor) -> Tensor:
        """``[B, S, H]`` hidden states after the final norm (``last_hidden_state``)."""
        b, s = tokens_B_S.shape
        h_BS_H = self.embed(tokens_B_S).flatten(0, 1)
        cos, sin = self.rotary(h_BS_H, pos_B_S)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, D]
        gqa = self.kv_heads != self.heads

        def heads(x_BS_F: Tensor, n: int) -> Tensor:
            return x_BS_F.view(b, s, n, self.head_dim).transpose(1, 2)

        for norm1, norm2, (q, k, v, o, gate, up, down) in self.layers:
            x = rms(h_BS_H, norm1, self.eps)
            q_B_N_S_D, k_B_N_S_D = heads(q(x), self.heads), heads(k(x), self.kv_heads)
            q_B_N_S_D = q_B_N_S_D * cos + rotate_half(q_B_N_S_D) * sin
            k_B_N_S_D = k_B_N_S_D * cos + rotate_half(k_B_N_S_D) * sin
            a = F.scaled_dot_product_attention(
                q_B_N_S_D, k_B_N_S_D, heads(v(x), self.kv_heads), attn_mask=mask_B1SS,
                scale=self.head_dim**-0.5, enable_gqa=gqa,
            )  # fmt: skip
            h_BS_H = h_BS_H + o(a.transpose(1, 2).reshape(b * s, -1))
            x = rms(h_BS_H, norm2, self.eps)
            h_BS_H = h_BS_H + down(F.silu(gate(x)) * up(x))
        return rms(h_BS_H, self.final_norm.weight, self.eps).view(b, s, -1)


def fast_body(model: nn.Module) -> FastBody | None:
    """A `FastBody` for ``model`` (a transformers causal LM or a PEFT model around one), or None
    where it does not apply (module doc; the caller then runs the model's own body)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not plain_decoder(base):
        return None
    config = base.config
    if base.training and float(getattr(config, "attention_dropout", 0.0) or 0.0) > 0:
        return None
    eps, probe = config.rms_norm_eps, base.model.embed_tokens.weight
    layers = []
    for block in base.model.layers:
        found = [_projection(m, probe) for m in projections(block)]
        checkpointed = getattr(block, "gradient_checkpointing", False)
        if checkpointed or any(p is None for p in found) or not plain_block(block, eps):
            return None
        layers.append((block.input_layernorm.weight, block.post_attention_layernorm.weight, found))
    return FastBody(base, layers)
