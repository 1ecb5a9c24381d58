"""Frozen LoRA base weights in bf16: what autocast computes for each layer, the LoRA weights and
everything outside the adapted layers untouched, PEFT's and the lean forward equal."""

import copy

import pytest
import torch
import torch.nn.functional as F
from lora_helpers import nonzero_lora_policy
from peft.tuners.lora.layer import Linear as LoraLinear

from burnish.config import ConfigError, load_config
from burnish.models.frozen_base import LoweredLinear, lower_base_precision
from burnish.models.lean_lora import LeanLinear


def _policy(seed=0, arch="llama"):
    return nonzero_lora_policy(arch=arch, hidden_size=64, num_heads=4, seed=seed)


def _logits_and_grads(model, ids):
    out = model(input_ids=ids).logits
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(), params)
    return out.detach(), torch.cat([g.flatten() for g in grads])


def test_a_lowered_layer_computes_what_autocast_computes():
    layer = torch.nn.Linear(48, 24, bias=False)
    x = torch.randn(5, 48, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = F.linear(x, layer.weight)
    (want_grad,) = torch.autograd.grad(want.float().sum(), x)
    layer.weight.requires_grad_(False)
    layer.weight.data = layer.weight.data.bfloat16()
    layer.__class__ = LoweredLinear
    got = layer(x)
    assert got.dtype == torch.float32 and torch.equal(got, want.float())
    (got_grad,) = torch.autograd.grad(got.sum(), x)
    assert got_grad.dtype == torch.float32
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=0)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])  # qwen2: q/k/v with biases
def test_policy_keeps_lora_and_everything_else_in_float32_and_stays_close(arch):
    plain = _policy(arch=arch)
    lowered = copy.deepcopy(plain)
    n = lower_base_precision(lowered, "bfloat16")
    adapted = [m for m in lowered.modules() if isinstance(m, LoraLinear)]
    assert n == len(adapted) == 14 and lower_base_precision(lowered, "bfloat16") == n  # idempotent
    for m in adapted:
        assert type(m.base_layer) is LoweredLinear and m.base_layer.weight.dtype == torch.bfloat16
        assert m.lora_A["default"].weight.dtype == torch.float32
        assert m.base_layer.bias is None or m.base_layer.bias.dtype == torch.float32
    assert any(m.base_layer.bias is not None for m in adapted) == (arch == "qwen2")
    trainable = {k: p.dtype for k, p in lowered.named_parameters() if p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}
    others = [p for k, p in lowered.named_parameters() if "base_layer" not in k]
    assert {p.dtype for p in others} == {torch.float32}  # embeddings, norms, LM head, LoRA
    ids = torch.randint(3, 60, (3, 11), generator=torch.Generator().manual_seed(1))
    want, want_g = _logits_and_grads(plain, ids)
    got, got_g = _logits_and_grads(lowered, ids)
    assert got.dtype == torch.float32 and not torch.equal(got, want)  # the matmuls did round
    torch.testing.assert_close(got, want, rtol=0, atol=0.05 * float(want.abs().max()))
    assert float(F.cosine_similarity(got_g, want_g, dim=0)) > 0.999


def test_lean_forward_equals_pefts_on_a_lowered_base():
    lean = _policy(seed=2)
    lower_base_precision(lean, "bfloat16")
    plain = copy.deepcopy(lean)
    for m in plain.modules():
        if type(m) is LeanLinear:
            m.__class__ = LoraLinear
    layer = next(m for m in lean.modules() if type(m) is LeanLinear)
    assert layer._plain_weights(torch.randn(2, layer.in_features)) is not None  # fast path
    ids = torch.randint(3, 60, (2, 9), generator=torch.Generator().manual_seed(3))
    want, want_g = _logits_and_grads(plain, ids)
    got, got_g = _logits_and_grads(lean, ids)
    assert torch.equal(got, want) and torch.equal(got_g, want_g)


def test_bad_requests_are_refused():
    policy = _policy()
    with pytest.raises(ValueError, match="allowed: \\['bfloat16', 'float16'\\]"):
        lower_base_precision(policy, "int8")
    lora_layer = next(m for m in policy.modules() if isinstance(m, LoraLinear))
    lora_layer.base_layer.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="trainable"):
        lower_base_precision(policy, "bfloat16")
    with pytest.raises(ConfigError, match="lora.enabled = false"):
        load_config(None, ["lora.enabled=false", "lora.base_dtype='bfloat16'"])
    with pytest.raises(ConfigError, match="base_dtype"):
        load_config(None, ["lora.base_dtype='int8'"])
