"""Truncated importance sampling against the sampler/trainer mismatch (docs/algorithms.md §17)."""

import math

import pytest
import torch

from burnish.algorithms import LossConfig, policy_loss
from burnish.algorithms.full_loss import tis_weights

OLD = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -1.5, 0.0]], dtype=torch.float64)
SAMPLER = torch.tensor([[-1.2, -0.5, -1.0], [-1.2, -0.4, 0.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
ADV = torch.tensor([1.0, -1.0], dtype=torch.float64)

# §17's table: loss and gradient with respect to logp (on-policy: logp = π_old)
CASES = {
    "none": (0.0, [[-0.166667, -0.166667, -0.166667], [0.25, 0.25, 0.0]]),
    "token": (0.151671, [[-0.203567, -0.166667, -0.061313], [0.5, 0.083218, 0.0]]),
    "sequence": (0.227754, [[-0.074888, -0.074888, -0.074888], [0.226209, 0.226209, 0.0]]),
}


def _loss(level, sampler=SAMPLER, old=OLD, mask=MASK, adv=ADV, **kw):
    logp = old.clone().requires_grad_()
    cfg = LossConfig("grpo", tis=level, tis_cap=2.0)
    loss, metrics = policy_loss(logp, old, adv, mask, cfg, sampler_logp=sampler, **kw)
    loss.backward()
    return loss, logp.grad, metrics


@pytest.mark.parametrize("level", list(CASES))
def test_values_and_gradients_match_the_documented_case(level):
    loss, grad, _ = _loss(level)
    value, gradient = CASES[level]
    assert loss.item() == pytest.approx(value, abs=1e-6)
    torch.testing.assert_close(grad, torch.tensor(gradient, dtype=grad.dtype), atol=1e-6, rtol=0)


def test_weights_truncate_at_the_cap():
    w = tis_weights(OLD, SAMPLER, MASK, "token", 2.0)
    expected = [[math.exp(0.2), 1.0, math.exp(-1.0)], [2.0, math.exp(-1.1), 0.0]]
    torch.testing.assert_close(w, torch.tensor(expected, dtype=w.dtype))
    w_seq = tis_weights(OLD, SAMPLER, MASK, "sequence", 2.0)
    assert w_seq[0, 0].item() == pytest.approx(math.exp(-0.8))
    assert w_seq[1, 1].item() == pytest.approx(math.exp(-0.1)) and w_seq[1, 2] == 0
    _, _, metrics = _loss("token")
    assert metrics["tis/capped_frac"] == pytest.approx(1 / 5)


def test_off_is_the_plain_loss():
    plain = OLD.clone().requires_grad_()
    loss, _ = policy_loss(plain, OLD, ADV, MASK, LossConfig("grpo"))
    loss.backward()
    off, grad, _ = _loss("none")
    assert off.item() == loss.item()
    torch.testing.assert_close(grad, plain.grad, rtol=0, atol=0)


@pytest.mark.parametrize("level", ["token", "sequence"])
def test_padding_poison_changes_nothing(level):
    poisoned = SAMPLER.clone()
    poisoned[1, 2] = float("nan")
    old = OLD.clone()
    old[1, 2] = float("inf")
    loss, grad, _ = _loss(level)
    loss_p, grad_p, _ = _loss(level, sampler=poisoned, old=old)
    assert loss_p.item() == loss.item()
    torch.testing.assert_close(grad_p, grad, rtol=0, atol=0)


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("loss_name", ["dapo", "grpo", "cispo"])
def test_micro_batches_add_up_to_the_full_batch(level, loss_name):
    torch.manual_seed(0)
    B, T = 6, 7
    old = -torch.rand(B, T, dtype=torch.float64) * 3
    logp0 = old + 0.1 * torch.randn(B, T, dtype=torch.float64)
    sampler = old + 0.5 * torch.randn(B, T, dtype=torch.float64)
    mask = torch.rand(B, T) > 0.25
    mask[:, 0] = True
    adv = torch.randn(B, dtype=torch.float64)
    cfg = LossConfig(loss_name, tis=level, tis_cap=1.5)
    n_tok, n_seq = float(mask.sum()), B
    full = logp0.clone().requires_grad_()
    loss, _ = policy_loss(full, old, adv, mask, cfg, sampler_logp=sampler)
    loss.backward()
    parts = logp0.clone().requires_grad_()
    total = 0.0
    for idx in (torch.arange(0, 2), torch.arange(2, 6)):
        part, _ = policy_loss(
            parts[idx], old[idx], adv[idx], mask[idx], cfg, sampler_logp=sampler[idx],
            num_tokens=n_tok, num_seqs=n_seq,
        )  # fmt: skip
        part.backward()
        total += part.item()
    assert total == pytest.approx(loss.item(), abs=1e-12)
    torch.testing.assert_close(parts.grad, full.grad, rtol=0, atol=1e-12)


def test_needs_sampler_logprobs_and_a_known_level():
    with pytest.raises(ValueError, match="tis='token' needs sampler_logp"):
        policy_loss(OLD.clone(), OLD, ADV, MASK, LossConfig("grpo", tis="token"))
    with pytest.raises(ValueError, match="unknown tis 'tokens'"):
        LossConfig("grpo", tis="tokens")
    with pytest.raises(ValueError, match="tis_cap must be >= 1"):
        LossConfig("grpo", tis="token", tis_cap=0.5)
