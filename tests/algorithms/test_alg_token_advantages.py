"""Per-token advantages [B, T] in `policy_loss`: values, gradients, padding, micro-batching; and
the on-policy distillation advantages."""

import math

import pytest
import torch

from burnish.algorithms import LossConfig, policy_loss
from burnish.algorithms.distill import distill_advantages, mix_advantages

TOKEN_VARIANTS = ["grpo", "dr_grpo", "dapo", "cispo", "gspo_token"]


def _case(seed=0, B=4, T=6):
    g = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(B, T, generator=g) * 2).requires_grad_(True)
    old = logp.detach() + 0.1 * torch.randn(B, T, generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, :2] = False
    adv_B_T = torch.randn(B, T, generator=g)
    return logp, old, mask, adv_B_T


def _cfg(name):
    return LossConfig(name=name, max_completion_len=8)


@pytest.mark.parametrize("name", TOKEN_VARIANTS)
def test_broadcast_advantages_equal_sequence_advantages(name):
    logp, old, mask, _ = _case()
    adv_B = torch.tensor([1.0, -0.5, 2.0, 0.3])
    l1, _ = policy_loss(logp, old, adv_B, mask, _cfg(name))
    (g1,) = torch.autograd.grad(l1, logp)
    l2, _ = policy_loss(logp, old, adv_B[:, None].expand(4, 6).clone(), mask, _cfg(name))
    (g2,) = torch.autograd.grad(l2, logp)
    assert torch.allclose(l1, l2) and torch.allclose(g1, g2)


def test_token_advantage_value_and_gradient_on_policy():
    """On-policy token-mean: L = −Σ m A / N (ratio 1), ∂L/∂logp = −m A / N."""
    logp, _, mask, adv = _case()
    loss, _ = policy_loss(logp, logp.detach(), adv, mask, _cfg("dapo"))
    n = mask.sum()
    assert math.isclose(float(loss.detach()), float(-(adv * mask).sum() / n), rel_tol=1e-5)
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.allclose(grad, -(adv * mask) / n, atol=1e-7)


@pytest.mark.parametrize("name", TOKEN_VARIANTS)
def test_padding_poison_in_token_advantages(name):
    logp, old, mask, adv = _case()
    poisoned = adv.clone()
    poisoned[~mask] = float("nan")
    l1, _ = policy_loss(logp, old, adv.masked_fill(~mask, 0.0), mask, _cfg(name))
    (g1,) = torch.autograd.grad(l1, logp)
    l2, _ = policy_loss(logp, old, poisoned, mask, _cfg(name))
    (g2,) = torch.autograd.grad(l2, logp)
    assert torch.isfinite(l2) and torch.isfinite(g2).all()
    assert torch.allclose(l1, l2) and torch.allclose(g1, g2)


@pytest.mark.parametrize("name", TOKEN_VARIANTS)
def test_micro_batches_add_up(name):
    logp, old, mask, adv = _case(B=6)
    cfg = _cfg(name)
    full, _ = policy_loss(logp, old, adv, mask, cfg)
    (g_full,) = torch.autograd.grad(full, logp)
    n, b = float(mask.sum()), mask.shape[0]
    total = 0
    for idx in (torch.arange(0, 2), torch.arange(2, 6)):
        part, _ = policy_loss(
            logp[idx], old[idx], adv[idx], mask[idx], cfg, num_tokens=n, num_seqs=b
        )
        total = total + part
    (g_parts,) = torch.autograd.grad(total, logp)
    assert torch.allclose(full, total, atol=1e-6) and torch.allclose(g_full, g_parts, atol=1e-7)


def test_gspo_refuses_token_advantages_and_bad_shapes():
    logp, old, mask, adv = _case()
    with pytest.raises(ValueError, match="gspo_token"):
        policy_loss(logp, old, adv, mask, _cfg("gspo"))
    with pytest.raises(ValueError, match="advantages must be"):
        policy_loss(logp, old, adv[:, :3], mask, _cfg("dapo"))


def test_distill_advantages_and_mixing():
    student = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    teacher = torch.tensor([[-0.5, -3.0, float("nan")], [-0.5, -100.0, -0.1]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    adv = distill_advantages(student, teacher, mask)
    assert torch.allclose(adv, torch.tensor([[0.5, -1.0, 0.0], [0.0, -20.0, 0.4]]))
    env = torch.tensor([1.0, float("nan")])
    assert torch.equal(mix_advantages(env, adv, 1.0), adv)  # NaN env advantages never read
    mixed = mix_advantages(torch.tensor([1.0, -1.0]), adv, 0.25)
    assert torch.allclose(mixed[0, 0], torch.tensor(0.75 + 0.125))
    with pytest.raises(ValueError):
        mix_advantages(env, adv, 1.5)
