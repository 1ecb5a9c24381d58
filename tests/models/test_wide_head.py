"""`WideHead`: a large vocabulary's LM head computed weight-first for the few rows of a decode
step, the same numbers as `F.linear` to float32 rounding, and `F.linear` itself wherever a
gradient is recorded."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from burnish.models import wide_head
from burnish.models.generate import GenerationRow, generate_rows
from burnish.models.load import load_model
from burnish.models.logprobs import _frozen_linear
from burnish.models.tiny import tiny_model
from burnish.models.wide_head import MAX_ROWS, MIN_VOCAB, WideHead, widen_head


def _head(bias: bool) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(24, MIN_VOCAB, bias=bias)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(4, 1, 24), (3, 5, 24), (7, 24)])
def test_same_logits_as_linear_for_few_rows(bias, shape, monkeypatch):
    head = _head(bias)
    x = torch.randn(*shape)
    want = F.linear(x, head.weight, head.bias)
    head.__class__ = WideHead

    def not_this_path(*args):
        raise AssertionError("few float32 rows without a gradient must go weight-first")

    monkeypatch.setattr(wide_head, "F", SimpleNamespace(linear=not_this_path))
    with torch.inference_mode():
        got = head(x)
    assert got.shape == want.shape and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_recorded_gradients_and_other_shapes_take_linear_itself(monkeypatch):
    head = _head(True)
    wide = _head(True)
    wide.__class__ = WideHead
    calls = []

    def linear(*args):
        calls.append(args[0].shape)
        return F.linear(*args)

    monkeypatch.setattr(wide_head, "F", SimpleNamespace(linear=linear))
    x = torch.randn(6, 24, requires_grad=True)
    assert torch.equal(wide(x), F.linear(x, head.weight, head.bias))  # bit for bit
    wide(x).sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    with torch.no_grad():
        for rows in (torch.randn(1, 24), torch.randn(MAX_ROWS + 1, 24)):  # one row, or many
            assert torch.equal(wide(rows), F.linear(rows, head.weight, head.bias))
        wide64, x64 = wide.double(), torch.randn(4, 24, dtype=torch.float64)  # not float32
        assert torch.equal(wide64(x64), F.linear(x64, wide64.weight, wide64.bias))
    # every call above went through F.linear, none weight-first
    assert calls == [(6, 24), (6, 24), (1, 24), (MAX_ROWS + 1, 24), (4, 24)]


def test_widen_head_takes_large_plain_heads_only(tmp_path):
    small, _ = tiny_model()
    assert not widen_head(small)  # 135 tokens
    assert type(small.get_output_embeddings()) is nn.Linear
    model, tok = tiny_model(seed=2)
    model.resize_token_embeddings(MIN_VOCAB, mean_resizing=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert widen_head(model) and widen_head(model)  # idempotent
    head = model.get_output_embeddings()
    assert type(head) is WideHead and isinstance(head, nn.Linear)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    head.weight.requires_grad_(False)
    assert _frozen_linear(head)  # training's frozen-head path still takes it
    assert not widen_head(nn.Linear(2, 2))  # no output layer to find


def test_loaded_large_vocabulary_model_samples_as_before(tmp_path):
    model, tok = tiny_model(seed=2)
    model.resize_token_embeddings(MIN_VOCAB, mean_resizing=False)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok = load_model(tmp_path)
    assert type(loaded.get_output_embeddings()) is WideHead
    prompts = [tuple(tok.encode(p)) for p in ("12+34=", "7-5=")]
    rows = [GenerationRow(prompt=p, max_new_tokens=6, seed=j) for p in prompts for j in range(3)]
    got = generate_rows(loaded, tok, rows, pad_id=tok.pad_token_id)
    loaded.get_output_embeddings().__class__ = nn.Linear
    want = generate_rows(loaded, tok, rows, pad_id=tok.pad_token_id)
    for a, b in zip(got, want, strict=True):
        assert a.tokens == b.tokens
        torch.testing.assert_close(a.logprobs, b.logprobs, rtol=1e-4, atol=1e-4)
