"""`LeanLinear` computes what PEFT's LoRA `Linear` computes, bit for bit, and falls back to
PEFT's own forward in every case its fast path does not cover; `merged_lora` runs PEFT's merged
weights without touching the base ones."""

import copy

import torch
from lora_helpers import nonzero_lora_policy
from peft.tuners.lora.layer import Linear as LoraLinear

from burnish.models import lean_lora
from burnish.models.lean_lora import (
    LeanLinear,
    MergedLinear,
    effective_linear,
    make_lean,
    merged_lora,
)
from burnish.models.lora import RowAdapters, reference_mode


def _policies(seed: int = 0):
    """The same LoRA policy twice: once with PEFT's layers, once with lean ones."""
    lean = nonzero_lora_policy(seed=seed)
    plain = copy.deepcopy(lean)
    for m in plain.modules():
        if type(m) is LeanLinear:
            m.__class__ = LoraLinear
    return plain, lean


def _logits_and_grads(model, ids):
    out = model(input_ids=ids).logits
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(), params)
    return out.detach(), grads


def test_attach_lora_makes_every_lora_linear_lean_and_make_lean_is_idempotent():
    _, lean = _policies()
    layers = [m for m in lean.modules() if isinstance(m, LoraLinear)]
    assert layers and all(type(m) is LeanLinear for m in layers)
    assert make_lean(lean) == 0  # nothing left to swap
    x = torch.randn(2, layers[0].in_features)
    assert all(m._plain_weights(x) is not None for m in layers), "the fast path is not taken"
    assert layers[0]._plain_weights(x.double()) is None  # a dtype cast: PEFT's forward


def test_same_outputs_and_gradients_bit_for_bit():
    plain, lean = _policies()
    ids = torch.randint(3, 60, (3, 9), generator=torch.Generator().manual_seed(1))
    want, want_grads = _logits_and_grads(plain, ids)
    got, got_grads = _logits_and_grads(lean, ids)
    assert float(want.abs().max()) > 0 and any(float(g.abs().max()) > 0 for g in want_grads)
    assert torch.equal(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert torch.equal(a, b)


def test_a_scaling_that_is_no_power_of_two_rounds_once_more_and_stays_close():
    """`LeanLinear` scales inside the product (``addmm``'s alpha): exact for a power-of-two
    scaling, as in the test above; any other rounds the scaled product once before the sum."""
    plain, lean = _policies(seed=2)
    for m in (*plain.modules(), *lean.modules()):
        if isinstance(m, LoraLinear):
            m.scaling["default"] = 1.7
    ids = torch.randint(3, 60, (3, 9), generator=torch.Generator().manual_seed(3))
    want, want_grads = _logits_and_grads(plain, ids)
    got, got_grads = _logits_and_grads(lean, ids)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_model_with_float32_adapter_bit_for_bit():
    """PEFT keeps the LoRA weights of a bf16 model in float32 and casts around them."""
    plain, lean = _policies(seed=4)
    for m in (plain, lean):
        for name, p in m.named_parameters():
            if "lora_" not in name:
                p.data = p.data.bfloat16()
    layer = next(m for m in lean.modules() if type(m) is LeanLinear)
    assert layer.lora_A["default"].weight.dtype == torch.float32
    assert layer._plain_weights(torch.randn(1, layer.in_features).bfloat16()) is not None
    ids = torch.randint(3, 60, (2, 8), generator=torch.Generator().manual_seed(5))
    want, want_grads = _logits_and_grads(plain, ids)
    got, got_grads = _logits_and_grads(lean, ids)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert torch.equal(a, b)


def test_fallbacks_give_peft_results():
    """Disabled adapter (reference mode), per-row adapters, merged weights, dropout."""
    plain, lean = _policies()
    ids = torch.randint(3, 60, (2, 7), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with reference_mode(plain), reference_mode(lean):
            layer = next(m for m in lean.modules() if type(m) is LeanLinear)
            assert layer._plain_weights(torch.randn(1, layer.in_features)) is None
            assert torch.equal(lean(input_ids=ids).logits, plain(input_ids=ids).logits)
        plain.eval(), lean.eval()
        for m in (plain, lean):
            with RowAdapters(m, ["default", "__base__"]):
                m.out = m(input_ids=ids).logits
        assert torch.equal(lean.out, plain.out)
        layer = next(m for m in lean.modules() if type(m) is LeanLinear)
        x = torch.randn(2, layer.in_features)
        unmerged = layer(x)
        layer.merge()
        assert layer.merged and layer._plain_weights(x) is None
        torch.testing.assert_close(layer(x), unmerged, rtol=1e-5, atol=1e-6)  # PEFT's merged path
        layer.unmerge()
        layer.lora_dropout["default"] = torch.nn.Dropout(0.5)
        layer.train()
        assert layer._plain_weights(x) is None
        torch.manual_seed(0)
        dropped = layer(x)
        torch.manual_seed(0)
        assert torch.equal(dropped, LoraLinear.forward(layer, x))  # PEFT's dropout path


def test_merged_lora_runs_the_weights_peft_merges_and_leaves_the_base_untouched():
    _, lean = _policies(seed=2)
    peft_merged = copy.deepcopy(lean)
    peft_merged.merge_adapter()  # PEFT adds (B @ A) * scaling into the base weight
    ids = torch.randint(3, 60, (2, 7), generator=torch.Generator().manual_seed(3))
    weights = {n: p.clone() for n, p in lean.named_parameters()}
    with torch.no_grad():
        unmerged = lean(input_ids=ids).logits
        with merged_lora(lean, tokens=10_000) as n:
            layers = [m for m in lean.modules() if isinstance(m, LoraLinear)]
            assert n == len(layers) and all(type(m) is MergedLinear for m in layers)
            merged = lean(input_ids=ids).logits
        want = peft_merged(input_ids=ids).logits
    assert not torch.equal(merged, unmerged)  # sums in another order round differently ...
    torch.testing.assert_close(merged, want, rtol=1e-5, atol=1e-5)  # ... by float32 rounding
    torch.testing.assert_close(merged, unmerged, rtol=1e-5, atol=1e-5)
    assert all(type(m) is LeanLinear and "_merged_weight" not in m.__dict__ for m in layers)
    for name, p in lean.named_parameters():
        assert torch.equal(p, weights[name]), name  # the base weights were never touched


def test_merged_lora_skips_gradients_disabled_adapters_and_what_does_not_pay(monkeypatch):
    plain, lean = _policies(seed=5)
    ids = torch.randint(3, 60, (2, 6), generator=torch.Generator().manual_seed(4))
    want, want_grads = _logits_and_grads(plain, ids)
    with merged_lora(lean, tokens=10_000) as n:
        assert n > 0
        got, got_grads = _logits_and_grads(lean, ids)  # with gradient: the unmerged path
    assert torch.equal(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        assert torch.equal(a, b)
    with merged_lora(lean, tokens=1) as n:  # one row-token: merging costs more than it saves
        assert n == 0
    monkeypatch.setattr(lean_lora, "MERGE_MAX_BYTES", 1024)
    with merged_lora(lean, tokens=10_000) as n:
        assert n == 0  # the merged weights would not fit the memory allowed
    monkeypatch.undo()
    with reference_mode(lean), merged_lora(lean, tokens=10_000) as n:
        assert n == 0  # the base model: nothing to merge
        layer = next(m for m in lean.modules() if type(m) is LeanLinear)
        w, b, _ = effective_linear(layer)
        assert w is layer.base_layer.weight and b is layer.base_layer.bias


def test_merged_lora_restores_the_layers_when_the_block_raises():
    _, lean = _policies()
    try:
        with merged_lora(lean, tokens=10_000):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert all(type(m) is not MergedLinear for m in lean.modules())
