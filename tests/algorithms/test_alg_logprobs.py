"""Chunked selective log-softmax and entropy equal the naive computation (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch

from burnish.algorithms import entropy_from_logits, selective_log_softmax


def naive_logp(logits, index, temperature=1.0):
    return (
        torch.log_softmax(logits.float() / temperature, -1).gather(-1, index[..., None]).squeeze(-1)
    )


def naive_entropy(logits, temperature=1.0):
    logp = torch.log_softmax(logits.float() / temperature, -1)
    return -(logp.exp() * logp).sum(-1)


TOL = {torch.float32: 2e-6, torch.bfloat16: 2e-6, torch.float64: 2e-6}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("sliced", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_matches_naive(dtype, temperature, sliced, chunk_size):
    torch.manual_seed(0)
    full = (torch.randn(3, 7, 37) * 3).to(dtype)
    base = full[:, :-1] if sliced else full  # a sliced (non-viewable) tensor, as logits[:, :-1]
    index = torch.randint(0, 37, base.shape[:-1])
    w = torch.randn(base.shape[:-1])
    a = base.detach().clone().requires_grad_()
    b = base.detach().clone().requires_grad_()
    if sliced:  # keep the non-contiguous layout for the chunked path
        a = full.detach().clone().requires_grad_()
        a_in = a[:, :-1]
    else:
        a_in = a

    y = selective_log_softmax(a_in, index, temperature=temperature, chunk_size=chunk_size)
    y_ref = naive_logp(b, index, temperature)
    assert y.dtype == torch.float32 and y.shape == index.shape
    torch.testing.assert_close(y, y_ref, atol=TOL[dtype], rtol=1e-6)
    (ga,) = torch.autograd.grad((y * w).sum(), a)
    (gb,) = torch.autograd.grad((y_ref * w).sum(), b)
    ga = ga[:, :-1] if sliced else ga
    assert ga.dtype == dtype
    torch.testing.assert_close(
        ga.float(), gb.float(), atol=TOL[dtype], rtol=1e-2 if dtype == torch.bfloat16 else 1e-5
    )

    h = entropy_from_logits(a_in, temperature=temperature, chunk_size=chunk_size)
    h_ref = naive_entropy(b, temperature)
    torch.testing.assert_close(h, h_ref, atol=TOL[dtype], rtol=1e-6)
    (ga,) = torch.autograd.grad((h * w).sum(), a)
    (gb,) = torch.autograd.grad((h_ref * w).sum(), b)
    ga = ga[:, :-1] if sliced else ga
    torch.testing.assert_close(
        ga.float(), gb.float(), atol=TOL[dtype], rtol=1e-2 if dtype == torch.bfloat16 else 1e-5
    )


def test_float64_gradcheck_against_autograd_in_float32_math():
    """Gradients equal autograd through the float32 naive formula for many shapes."""
    torch.manual_seed(0)
    for shape in [(5,), (2, 5), (2, 3, 4, 5)]:
        x = torch.randn(*shape, dtype=torch.float32, requires_grad=True)
        idx = torch.randint(0, shape[-1], shape[:-1])
        y = selective_log_softmax(x, idx, chunk_size=2)
        (g,) = torch.autograd.grad(y.sum(), x)
        x2 = x.detach().clone().requires_grad_()
        (g2,) = torch.autograd.grad(naive_logp(x2, idx).sum(), x2)
        torch.testing.assert_close(g, g2)
        assert y.shape == shape[:-1]


def test_entropy_values():
    """§14.6: [2,1,0,−1] → 0.947537, uniform → ln 4, [5,0,0,0] → 0.119079 nats."""
    logits = torch.tensor([[2.0, 1, 0, -1], [0, 0, 0, 0], [5, 0, 0, 0]], dtype=torch.float64)
    h = entropy_from_logits(logits)
    torch.testing.assert_close(
        h.double(),
        torch.tensor([0.947537, math.log(4), 0.119079], dtype=torch.float64),
        atol=1e-6,
        rtol=0,
    )


def test_masked_vocabulary_entries_are_finite():
    x = torch.tensor([[0.0, float("-inf"), 1.0, 2.0]], requires_grad=True)
    h = entropy_from_logits(x)
    y = selective_log_softmax(x, torch.tensor([2]))
    (gh,) = torch.autograd.grad(h.sum(), x)
    (gy,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(h).all() and torch.isfinite(gh).all() and torch.isfinite(gy).all()
    assert gh[0, 1] == 0 and gy[0, 1] == 0
    torch.testing.assert_close(h, naive_entropy(torch.tensor([[0.0, 1.0, 2.0]])))


def test_no_grad_input_and_empty():
    x = torch.randn(2, 3, 5)
    idx = torch.randint(0, 5, (2, 3))
    torch.testing.assert_close(selective_log_softmax(x, idx), naive_logp(x, idx))
    assert selective_log_softmax(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).shape == (0,)
    assert entropy_from_logits(torch.zeros(2, 0, 5)).shape == (2, 0)


def test_bad_input():
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match="int64"):
        selective_log_softmax(x, torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="shape"):
        selective_log_softmax(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        entropy_from_logits(x, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        entropy_from_logits(x, chunk_size=0)
    with pytest.raises(ValueError, match="floating"):
        entropy_from_logits(torch.zeros(2, 5, dtype=torch.long))
