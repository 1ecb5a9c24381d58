"""Frozen float32 LoRA base layers through oneDNN: the same float32 values and input gradients
as `F.linear`, small products and other dtypes left to BLAS, the CPU rule of "auto"."""

import copy

import pytest
import torch
import torch.nn.functional as F
from lora_helpers import nonzero_lora_policy
from peft.tuners.lora.layer import Linear as LoraLinear

import burnish.models.onednn_linear as od
from burnish.config import ConfigError, load_config
from burnish.models.frozen_base import lower_base_precision
from burnish.models.lean_lora import LeanLinear
from burnish.models.onednn_linear import (
    OneDnnLinear,
    frozen_linear,
    route_base_matmuls,
    wants_onednn,
)

needs_onednn = pytest.mark.skipif(not od.onednn_available(), reason="torch without oneDNN")


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the products that went to oneDNN."""
    calls = []
    real = od.onednn_linear

    def counted(x, w, b):
        calls.append(tuple(x.shape))
        return real(x, w, b)

    monkeypatch.setattr(od, "onednn_linear", counted)
    return calls


def _frozen_layer(d_in, d_out, bias):
    layer = torch.nn.Linear(d_in, d_out, bias=bias)
    layer.requires_grad_(False)
    return layer


@needs_onednn
@pytest.mark.parametrize("bias", [False, True])
def test_a_large_product_matches_f_linear_in_value_and_input_gradient(bias, onednn_calls):
    layer = _frozen_layer(512, 512, bias)
    want_layer = copy.deepcopy(layer)
    layer.__class__ = OneDnnLinear
    x = torch.randn(2, 64, 512, requires_grad=True)  # 128 x 512 x 512 = 2^25 multiply-adds
    g_out = torch.randn(2, 64, 512)
    want = want_layer(x)
    (want_g,) = torch.autograd.grad(want, x, g_out)
    got = layer(x)
    (got_g,) = torch.autograd.grad(got, x, g_out)
    assert onednn_calls == [(2, 64, 512), (2, 64, 512)]  # forward, then the input's gradient
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_g, want_g, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():  # the sampler's calls
        torch.testing.assert_close(layer(x.detach()), want.detach(), rtol=1e-5, atol=1e-5)
    assert len(onednn_calls) == 3


def test_small_products_other_dtypes_and_trainable_weights_stay_on_f_linear(onednn_calls):
    layer = _frozen_layer(256, 512, False)
    layer.__class__ = OneDnnLinear
    small = torch.randn(64, 256)  # 2^23 multiply-adds: below ONEDNN_MIN_MACS
    assert torch.equal(layer(small), F.linear(small, layer.weight))
    big = torch.randn(512, 256)
    wide = copy.deepcopy(layer).double()  # a float64 model
    assert torch.equal(wide(big.double()), F.linear(big.double(), wide.weight))
    layer.weight.requires_grad_(True)  # full fine-tuning: the weight needs its gradient
    assert torch.equal(layer(big), F.linear(big, layer.weight))
    assert onednn_calls == []


@needs_onednn
def test_a_large_weight_goes_to_onednn_at_few_rows_without_gradient_only(onednn_calls):
    layer = _frozen_layer(512, 512, True)  # ONEDNN_MIN_WEIGHT elements
    layer.__class__ = OneDnnLinear
    x = torch.randn(4, 512)  # 2^20 multiply-adds: far below ONEDNN_MIN_MACS
    with torch.no_grad():  # a decode step's product
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
        assert frozen_linear(x, layer.weight, None, True).shape == (4, 512)
    assert onednn_calls == [(4, 512), (4, 512)]
    xg = x.clone().requires_grad_(True)  # with the input's gradient BLAS stays faster
    assert torch.equal(layer(xg), F.linear(xg, layer.weight, layer.bias))
    small = _frozen_layer(256, 512, False)  # below ONEDNN_MIN_WEIGHT
    small.__class__ = OneDnnLinear
    with torch.no_grad():
        small(torch.randn(4, 256))
    assert len(onednn_calls) == 2


@needs_onednn
def test_a_routed_policy_trains_as_the_plain_one_within_rounding(monkeypatch, onednn_calls):
    monkeypatch.setattr(od, "ONEDNN_MIN_MACS", 0)  # the test model's products are tiny
    plain = nonzero_lora_policy(arch="qwen2", hidden_size=64, num_heads=4, seed=4)  # biases
    routed = copy.deepcopy(plain)
    n = route_base_matmuls(routed, "onednn")
    adapted = [m for m in routed.modules() if isinstance(m, LoraLinear)]
    assert n == len(adapted) == 14 and route_base_matmuls(routed, "onednn") == n  # idempotent
    assert all(type(m) is LeanLinear and type(m.base_layer) is OneDnnLinear for m in adapted)
    ids = torch.randint(3, 60, (3, 11), generator=torch.Generator().manual_seed(5))
    grads = []
    for model in (plain, routed):
        out = model(input_ids=ids).logits
        params = [p for p in model.parameters() if p.requires_grad]
        g = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(), params)
        grads.append((out.detach(), torch.cat([t.flatten() for t in g])))
    # every base layer's forward and its input's gradient, except the first layer's q/k/v:
    # their input comes from the frozen embedding and needs none
    assert len(onednn_calls) == n + (n - 3)
    (want, want_g), (got, got_g) = grads
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_g, want_g, rtol=1e-4, atol=1e-4)


def test_route_leaves_lowered_layers_and_blas_alone():
    policy = nonzero_lora_policy(hidden_size=64, num_heads=4)
    assert route_base_matmuls(policy, "blas") == 0
    lower_base_precision(policy, "bfloat16")  # bf16 weights already run through oneDNN
    assert route_base_matmuls(policy, "onednn" if od.onednn_available() else "blas") == 0


def test_auto_routes_on_amd_cpus_only(monkeypatch):
    monkeypatch.setattr(od, "onednn_available", lambda: True)
    assert wants_onednn("auto", vendor="AuthenticAMD")
    assert wants_onednn("auto", vendor="HygonGenuine")
    assert not wants_onednn("auto", vendor="GenuineIntel")
    assert not wants_onednn("auto", vendor="")  # unknown (not Linux, or ARM)
    assert wants_onednn("onednn", vendor="GenuineIntel")
    assert not wants_onednn("blas", vendor="AuthenticAMD")
    monkeypatch.setattr(od, "onednn_available", lambda: False)
    assert not wants_onednn("auto", vendor="AuthenticAMD")
    with pytest.raises(ValueError, match="no oneDNN linear kernel"):
        wants_onednn("onednn")


def test_bad_choices_are_refused():
    with pytest.raises(ValueError, match="allowed: auto, onednn, blas"):
        wants_onednn("mkl")
    with pytest.raises(ConfigError, match="base_matmul"):
        load_config(None, ["lora.base_matmul='mkl'"])
    assert load_config(None, []).lora.base_matmul == "auto"


@needs_onednn
def test_frozen_linear_picks_the_kernel_a_onednn_layer_picks(onednn_calls):
    """The merged decode layers and the fast decode step run their products through it."""
    w, b = torch.randn(512, 256) / 256**0.5, torch.randn(512)  # below ONEDNN_MIN_WEIGHT
    big, small = torch.randn(256, 256), torch.randn(4, 256)  # 2^25 and 2^19 multiply-adds
    torch.testing.assert_close(
        od.frozen_linear(big, w, b, True), F.linear(big, w, b), rtol=1e-5, atol=1e-5
    )
    assert onednn_calls == [(256, 256)]
    assert torch.equal(od.frozen_linear(small, w, b, True), F.linear(small, w, b))  # too small
    assert torch.equal(od.frozen_linear(big, w, b, False), F.linear(big, w, b))  # a BLAS base
    assert torch.equal(  # float64: oneDNN's float32 kernel does not apply
        od.frozen_linear(big.double(), w.double(), None, True), F.linear(big.double(), w.double())
    )
    assert onednn_calls == [(256, 256)]
