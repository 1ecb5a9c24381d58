"""`FastDecoder` gives the logits transformers' forward gives, and steps aside where it cannot."""

import pytest
import torch
from lora_helpers import grouped_model, random_lora

from burnish.models import generate as gen
from burnish.models.fast_decode import fast_decoder
from burnish.models.generate import GenerationRow, generate_rows
from burnish.models.kv_cache import reserved_cache
from burnish.models.lean_lora import merged_lora
from burnish.models.lora import reference_mode
from burnish.models.tiny import tiny_model


def _models():
    llama, tok = tiny_model("llama", hidden_size=32, num_layers=2, num_heads=2, seed=1)
    return {
        "llama": (llama, tok),
        "qwen2": grouped_model("qwen2"),
        "mistral": grouped_model("mistral"),
    }


def _lora(model):
    return random_lora(model).eval()


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_one_step_matches_the_models_forward(arch):
    model, tok = _models()[arch]
    ids = torch.tensor([[0, 0, 9, 30, 41, 52], [12, 13, 14, 15, 16, 17]])  # row 0 left-padded
    mask = (ids != 0).long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    nxt = torch.tensor([60, 70])
    with torch.inference_mode():
        cache = reserved_cache(model, extra=4)
        model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, cache=cache)
        fast = fast_decoder(model, cache)
        assert fast is not None
        full_mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
        got = fast(nxt, full_mask, pos[:, -1] + 1)
        full = torch.cat([ids, nxt[:, None]], 1)
        want = model(
            input_ids=full,
            attention_mask=full_mask,
            position_ids=torch.cat([pos, pos[:, -1:] + 1], 1),
        ).logits[:, -1]
    assert float(want.abs().max()) > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_prefill_matches_the_models_forward(arch):
    """Left-padded prompts into an empty cache: the last logits and every real position's keys
    and values are transformers' (padding positions are never read)."""
    model, tok = _models()[arch]
    ids = torch.tensor([[0, 0, 0, 9, 30, 41], [12, 13, 14, 15, 16, 17], [0, 22, 23, 24, 25, 26]])
    mask = (ids != 0).long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.inference_mode():
        ours, theirs = reserved_cache(model, extra=4), reserved_cache(model, extra=4)
        fast = fast_decoder(model, ours)
        assert fast is not None
        got = fast.prefill(ids, mask, pos)
        want = model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, cache=theirs
        ).logits[:, -1]
    assert float(want.abs().max()) > 0 and bool(torch.isfinite(got).all())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    real_B1L1 = mask.bool()[:, None, :, None]
    for a, b in zip(ours.layers, theirs.layers, strict=True):
        for x, y in ((a.keys, b.keys), (a.values, b.values)):
            assert bool(torch.isfinite(x).all())
            torch.testing.assert_close(x * real_B1L1, y * real_B1L1, rtol=1e-5, atol=1e-5)


def _rows(tok, n=8, new=8):
    """Rows of two budgets: the short ones end early and are dropped from the batch."""
    prompts = [tok.encode(f"<|user|>{i}+{i}=<|end|><|assistant|>") for i in range(n // 2)]
    return [
        GenerationRow(prompt=tuple(p), max_new_tokens=new if i % 2 else 2, seed=10 * i + j)
        for i, p in enumerate(prompts)
        for j in range(2)
    ]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_generation_with_a_merged_adapter_is_the_models_own(arch, monkeypatch):
    model, tok = _models()[arch]
    policy = _lora(model)
    base = policy.get_base_model()
    rows = _rows(tok)
    used = []
    real = gen.fast_decoder
    monkeypatch.setattr(gen, "fast_decoder", lambda m, c: used.append(real(m, c)) or used[-1])
    fast = generate_rows(base, tok, rows, pad_id=tok.pad_token_id)
    assert used and used[-1] is not None
    monkeypatch.setattr(gen, "fast_decoder", lambda m, c: None)
    slow = generate_rows(base, tok, rows, pad_id=tok.pad_token_id)
    assert {len(r.tokens) for r in fast} == {2, 8}
    for a, b in zip(fast, slow, strict=True):
        assert a.tokens == b.tokens
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=0, atol=1e-5)


def test_steps_aside_where_the_arithmetic_would_differ():
    model, _ = _models()["llama"]
    policy = _lora(model)
    base = policy.get_base_model()
    cache = reserved_cache(base, extra=4)
    assert fast_decoder(base, cache) is None  # unmerged LoRA layers: three products, not one
    with merged_lora(base, tokens=10_000) as n:
        assert n == 14 and fast_decoder(base, cache) is not None
        assert fast_decoder(base, None) is None  # no reserved cache
        handle = base.model.layers[1].mlp.register_forward_hook(lambda *a: None)
        assert fast_decoder(base, cache) is None  # a hook would not run
        handle.remove()
        base.model.norm.forward = base.model.norm.forward  # an instance forward (hub kernels)
        assert fast_decoder(base, cache) is None
        del base.model.norm.forward
        assert fast_decoder(base, cache) is not None
        handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
        assert fast_decoder(base, cache) is None  # a hook for every module would not run
        handle.remove()
        assert fast_decoder(base, cache) is not None
    with reference_mode(policy):  # adapters disabled: the base weights, one product each
        assert fast_decoder(base, cache) is not None
