"""A decode step (and the prefill) of a Llama-layout model in a few tensor ops, for sampling.

A decode step feeds one token per row. Through transformers that step is a tree of module calls
(decoder layers, attention, MLP, norms, the LoRA wrappers around every projection), keyword
plumbing, and a causal mask built anew, per token; on a small model those are most of its time.
`FastDecoder` runs the same arithmetic straight from the weights: per layer two RMS norms, the
seven projections as plain products (LoRA layers merged by `burnish.models.lean_lora.merged_lora`
beforehand), the rotary embedding from the model's own `rotary_emb` module (so every rope type
transformers knows is computed by transformers), one `scaled_dot_product_attention` against the
KV cache, and the residual sums. `FastDecoder.prefill` runs the prompts' prefill the same way,
with a causal padding mask.

It departs from transformers' step only in ways that leave the arithmetic the same: the padding
mask is the boolean ``[B, 1, 1, L]`` mask the SDPA path builds (for the prefill a ``[B, 1, S,
S]`` causal padding mask in which a padding query sees itself only), handed to SDPA directly,
and grouped-query attention uses SDPA's ``enable_gqa`` rather than repeating the keys. The
logits, and the prefill's keys and values at real positions, match transformers' to float32
rounding (tests/models/test_fast_decode.py).

`fast_decoder` builds one for a model and a `burnish.models.kv_cache.reserved_cache`, or returns
None (the caller then calls the model) unless all of this holds: a Llama, Qwen2 or Mistral causal
LM with SiLU MLPs and full attention in every layer, RMS norms, projections that are plain
float32 linears (or merged or adapter-disabled LoRA layers over one), no forward hooks, and the
cache's layers all `ReservedLayer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.activations import SiLUActivation

from burnish.models.kv_cache import ReservedLayer
from burnish.models.lean_lora import effective_linear, global_hooks, hooked
from burnish.models.onednn_linear import frozen_linear

__all__ = [
    "FastDecoder",
    "attention_shape",
    "fast_decoder",
    "plain_block",
    "plain_decoder",
    "projections",
    "rms",
    "rotate_half",
]

_ARCHITECTURES = ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM")
_SILU = (nn.SiLU, SiLUActivation)
_PROJECTIONS = (
    ("self_attn", "q_proj"),
    ("self_attn", "k_proj"),
    ("self_attn", "v_proj"),
    ("self_attn", "o_proj"),
    ("mlp", "gate_proj"),
    ("mlp", "up_proj"),
    ("mlp", "down_proj"),
)


@dataclass(frozen=True)
class _Linear:
    weight: Tensor
    bias: Tensor | None
    onednn: bool
    """Run the product through oneDNN where it pays (the base layer is a `OneDnnLinear`)."""

    def __call__(self, x: Tensor) -> Tensor:
        return frozen_linear(x, self.weight, self.bias, self.onednn)


@dataclass(frozen=True)
class _Layer:
    norm1: Tensor
    norm2: Tensor
    q: _Linear
    k: _Linear
    v: _Linear
    o: _Linear
    gate: _Linear
    up: _Linear
    down: _Linear


def rms(h_BH: Tensor, weight_H: Tensor, eps: float) -> Tensor:
    """transformers' `LlamaRMSNorm` for a float32 input (the same ops in the same order), over
    the last dimension of any shape."""
    return weight_H * (h_BH * torch.rsqrt(h_BH.pow(2).mean(-1, keepdim=True) + eps))


def attention_shape(config) -> tuple[int, int, int]:
    """``(query heads, key/value heads, head dim)`` of a Llama-layout config."""
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return heads, kv_heads, head_dim


def rotate_half(x: Tensor) -> Tensor:
    """transformers' ``rotate_half`` of the rotary embedding."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class FastDecoder:
    """Logits of the next token for one fed token per row (module doc); call it per step."""

    def __init__(self, model: nn.Module, layers: list[_Layer], cache) -> None:
        inner = model.model
        config = model.config
        self.embed = inner.embed_tokens
        self.rotary = inner.rotary_emb
        self.head = model.get_output_embeddings()
        self.final_norm = inner.norm.weight
        self.eps = config.rms_norm_eps
        self.heads, self.kv_heads, self.head_dim = attention_shape(config)
        self.scaling = self.head_dim**-0.5
        self.layers = layers
        self.cache_layers = cache.layers

    def __call__(self, tokens_B: Tensor, mask_B_L: Tensor, pos_B: Tensor) -> Tensor:
        """``[B, V]`` logits after feeding ``tokens_B`` at positions ``pos_B``; ``mask_B_L``
        covers the cache including this token (1 real, 0 padding)."""
        return self._run(tokens_B[:, None], pos_B[:, None], mask_B_L.bool()[:, None, None, :])

    def prefill(self, tokens_B_S: Tensor, mask_B_S: Tensor, pos_B_S: Tensor) -> Tensor:
        """``[B, V]`` logits after the last of ``tokens_B_S``, left-padded prompts fed into an
        empty cache at positions ``pos_B_S`` (``mask_B_S``: 1 real, 0 padding). A query sees the
        real tokens up to it; a padding query sees itself only, so that no attention row is
        empty (its output is never read: no real query sees a padding key)."""
        s = tokens_B_S.shape[1]
        own_SS = torch.eye(s, dtype=torch.bool, device=tokens_B_S.device)
        causal_SS = torch.ones_like(own_SS).tril()
        mask_B1SS = (causal_SS & mask_B_S.bool()[:, None, :]) | own_SS
        return self._run(tokens_B_S, pos_B_S, mask_B1SS[:, None])

    def _run(self, tokens_B_S: Tensor, pos_B_S: Tensor, mask_B1SL: Tensor) -> Tensor:
        b, s = tokens_B_S.shape
        h = self.embed(tokens_B_S)
        cos, sin = self.rotary(h, pos_B_S)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, S, D]
        gqa = self.kv_heads != self.heads
        for layer, cache in zip(self.layers, self.cache_layers):
            x = rms(h, layer.norm1, self.eps)
            q = layer.q(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
            k = layer.k(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            v = layer.v(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            keys, values = cache.update(k, v)
            a = F.scaled_dot_product_attention(
                q, keys, values, attn_mask=mask_B1SL, scale=self.scaling, enable_gqa=gqa
            )
            h = h + layer.o(a.transpose(1, 2).reshape(b, s, -1))
            x = rms(h, layer.norm2, self.eps)
            h = h + layer.down(F.silu(layer.gate(x)) * layer.up(x))
        return self.head(rms(h[:, -1:], self.final_norm, self.eps))[:, -1].float()


def _plain_norm(norm: nn.Module, eps: float) -> bool:
    """A transformers RMS norm with this epsilon and a float32 weight, without hooks."""
    return (
        type(norm).__name__.endswith("RMSNorm")
        and getattr(norm, "variance_epsilon", None) == eps
        and norm.weight.dtype == torch.float32
        and not hooked(norm)
    )


def plain_block(block: nn.Module, eps: float) -> bool:
    """A decoder layer whose norms, MLP activation and attention run as their classes say: RMS
    norms with this epsilon and float32 weights, a SiLU MLP, no hooks anywhere (the projections
    are checked by the caller)."""
    mlp = getattr(block, "mlp", None)
    attn = getattr(block, "self_attn", None)
    norms = (
        getattr(block, "input_layernorm", None),
        getattr(block, "post_attention_layernorm", None),
    )
    if mlp is None or attn is None or any(n is None or not _plain_norm(n, eps) for n in norms):
        return False
    act = getattr(mlp, "act_fn", None)
    return type(act) in _SILU and not any(hooked(m) for m in (mlp, act, attn, block))


def projections(block: nn.Module) -> list[nn.Module | None]:
    """The layer's seven projections in `_PROJECTIONS` order (None where one is missing)."""
    return [getattr(getattr(block, part, None), name, None) for part, name in _PROJECTIONS]


def _layer(block: nn.Module, eps: float) -> _Layer | None:
    linears = []
    for module in projections(block):
        found = None if module is None or hooked(module) else effective_linear(module)
        if found is None or found[0].dtype != torch.float32:
            return None
        linears.append(_Linear(*found))
    if not plain_block(block, eps):
        return None
    return _Layer(block.input_layernorm.weight, block.post_attention_layernorm.weight, *linears)


def plain_decoder(model: nn.Module) -> bool:
    """Whether ``model`` is a Llama, Qwen2 or Mistral causal LM of the layout both `FastDecoder`
    and `burnish.models.fast_body.FastBody` run: SiLU MLPs, full attention in every layer,
    float32 embeddings, plain RMS norms, no module hooks registered for every module and none
    on the model, its decoder, embeddings, rotary module, final norm or head (each layer is
    checked apart, `plain_block`)."""
    if type(model).__name__ not in _ARCHITECTURES:
        return False
    config = model.config
    inner = getattr(model, "model", None)
    if inner is None or getattr(config, "hidden_act", None) != "silu":
        return False
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ()):
        return False
    head = model.get_output_embeddings()
    parts = [getattr(inner, name, None) for name in ("embed_tokens", "rotary_emb", "norm")]
    if head is None or any(m is None for m in parts):  # a transformers of another layout
        return False
    if global_hooks() or any(hooked(m) for m in (model, inner, head, *parts)):
        return False
    embed_weight = getattr(inner.embed_tokens, "weight", None)  # absent in a wrapper (PEFT's)
    if not isinstance(embed_weight, Tensor) or embed_weight.dtype != torch.float32:
        return False
    return _plain_norm(inner.norm, config.rms_norm_eps)


def fast_decoder(model: nn.Module, cache) -> FastDecoder | None:
    """A `FastDecoder` for ``model`` writing into ``cache``, or None where it does not apply
    (module doc; the caller then runs the model's own forward)."""
    if cache is None or not plain_decoder(model):
        return None
    if any(type(layer) is not ReservedLayer for layer in getattr(cache, "layers", ())):
        return None
    eps = model.config.rms_norm_eps
    layers = [_layer(block, eps) for block in model.model.layers]
    if any(layer is None for layer in layers) or len(layers) != len(cache.layers):
        return None
    return FastDecoder(model, layers, cache)  # type: ignore[arg-type]
