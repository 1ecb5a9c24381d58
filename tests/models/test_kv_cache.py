"""The decode loop's reserved KV cache: the same samples as transformers' growing cache, bit for
bit, and the model's own cache wherever its layers are not plain full attention."""

from dataclasses import replace

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM
from transformers.cache_utils import DynamicCache

import burnish.models.generate as generate
from burnish.models.generate import GenerationRow, generate_rows
from burnish.models.kv_cache import ReservedLayer, reserved_cache
from burnish.models.tiny import tiny_model


def _rows(model, tok, max_new_tokens):
    """Prompts of different lengths (left padding); some rows stop early (rows are dropped):
    their stop token is one they sample, found by a first run without stops."""
    prompts = [tuple(tok.encode(p)) for p in ("12+34=", "7-5=", "100*3=")]
    rows = [
        GenerationRow(prompt=p, max_new_tokens=max_new_tokens, seed=10 * i + j)
        for i, p in enumerate(prompts)
        for j in range(3)
    ]
    free = generate_rows(model, tok, rows, pad_id=tok.pad_token_id)
    return [
        replace(r, stop_token_ids=(f.tokens[k % 5],)) if k % 2 and len(f.tokens) > k % 5 else r
        for k, (r, f) in enumerate(zip(rows, free))
    ]


@pytest.mark.parametrize("max_new_tokens", [1, 9])
def test_same_tokens_and_logprobs_as_the_models_own_cache(monkeypatch, max_new_tokens):
    model, tok = tiny_model(seed=3)
    rows = _rows(model, tok, max_new_tokens)
    made = []
    real = generate.reserved_cache
    monkeypatch.setattr(
        generate, "reserved_cache", lambda m, extra: made.append(real(m, extra)) or made[-1]
    )
    got = generate_rows(model, tok, rows, pad_id=tok.pad_token_id)
    assert made and isinstance(made[0].layers[0], ReservedLayer)  # the reserved cache ran
    monkeypatch.setattr(generate, "reserved_cache", lambda m, extra: None)
    want = generate_rows(model, tok, rows, pad_id=tok.pad_token_id)
    if max_new_tokens > 1:
        assert {r.finish_reason for r in want} == {"stop", "length"}  # rows were dropped
    for a, b in zip(got, want, strict=True):
        assert (a.tokens, a.logprobs, a.finish_reason) == (b.tokens, b.logprobs, b.finish_reason)


def test_a_layer_writes_in_place_keeps_rows_and_grows_past_its_room():
    layer = ReservedLayer(extra=2)
    k = torch.randn(3, 2, 4, 5)
    keys, _ = layer.update(k, k + 1)
    room = layer._room_k
    assert room.shape[-2] == 6 and torch.equal(keys, k)
    steps = [torch.randn(3, 2, 1, 5) for _ in range(4)]  # two more than reserved
    for i, s in enumerate(steps):
        keys, values = layer.update(s, s + 1)
        if i < 2:
            assert layer._room_k.data_ptr() == room.data_ptr()  # written in place
    want = torch.cat([k, *steps], dim=-2)
    assert torch.equal(keys, want) and torch.equal(values, want + 1)
    assert layer.get_seq_length() == 8
    layer.batch_select_indices(torch.tensor([2, 0]))
    keys, _ = layer.update(steps[0][:2], steps[0][:2])
    assert torch.equal(keys, torch.cat([want[[2, 0]], steps[0][:2]], dim=-2))


def test_models_with_other_layer_kinds_keep_their_own_cache():
    model, _ = tiny_model()
    assert isinstance(reserved_cache(model, extra=4), DynamicCache)
    sliding = MistralForCausalLM(
        MistralConfig(
            vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, sliding_window=4,
        )
    )  # fmt: skip
    assert reserved_cache(sliding, extra=4) is None
    assert reserved_cache(torch.nn.Linear(2, 2), extra=4) is None  # no config at all
