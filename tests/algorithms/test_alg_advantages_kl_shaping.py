"""Advantages (§14.2), KL estimators (§14.7), overlong penalty (§14.8), dynamic sampling (§14.9)."""

from __future__ import annotations

import math

import pytest
import torch
from grpo_case import Case

from burnish.algorithms import (
    group_advantages,
    keep_informative_groups,
    kl_estimate,
    masked_mean,
    soft_overlong_penalty,
)

P6 = 6e-7
REF = [0.5, -1.5, 0.5, 0.5, -0.783349, 0.261116, -0.783349, 1.305582]


def _adv(case: Case, **kw) -> torch.Tensor:
    return group_advantages(case.rewards.view(2, 4), **kw).reshape(-1)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"scale": "group", "eps": 0.0}, REF),
        (
            {"scale": "group", "eps": 1e-4},
            [0.4999, -1.4997, 0.4999, 0.4999, -0.783186, 0.261062, -0.783186, 1.30531],
        ),
        (
            {"scale": "group"},
            [0.499999, -1.499997, 0.499999, 0.499999, -0.783348, 0.261116, -0.783348, 1.30558],
        ),
        (
            {"scale": "batch", "eps": 0.0},
            [0.504525, -1.513575, 0.504525, 0.504525, -0.756787, 0.252262, -0.756787, 1.261312],
        ),
        ({"scale": "none"}, [0.25, -0.75, 0.25, 0.25, -0.375, 0.125, -0.375, 0.625]),
    ],
)
def test_advantage_table(case: Case, kw, expected):
    got = _adv(case, **kw)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), atol=P6, rtol=0)


def test_reference_advantages_exact(case: Case):
    torch.testing.assert_close(_adv(case, eps=0.0), case.adv, atol=1e-12, rtol=0)
    assert group_advantages(case.rewards.view(2, 4)).dtype == torch.float64


def test_all_equal_group_is_exact_zero():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.1, 0.1, 0.1, 0.1], [0.0, 1.0, 0.0, 1.0]])
    for scale in ("group", "batch", "none"):
        for eps in (0.0, 1e-6):
            adv = group_advantages(rewards, scale=scale, eps=eps)
            assert torch.equal(adv[:2], torch.zeros(2, 4)), (scale, eps, adv)
            assert not torch.isnan(adv).any()
            assert (adv[2] != 0).all()


def test_group_size_one_has_no_nan():
    adv = group_advantages(torch.tensor([[0.3], [1.0]]), eps=0.0)
    assert torch.equal(adv, torch.zeros(2, 1))
    adv = group_advantages(torch.tensor([[0.3], [1.0]]), scale="batch", eps=0.0)
    assert torch.equal(adv, torch.zeros(2, 1))


def test_unscorable_rewards_are_excluded():
    nan = float("nan")
    rewards = torch.tensor([[1.0, nan, 0.0, 1.0], [nan, nan, nan, nan], [1.0, nan, nan, nan]])
    adv = group_advantages(rewards, eps=0.0)
    assert not torch.isnan(adv).any()
    expected_row0 = group_advantages(torch.tensor([[1.0, 0.0, 1.0]]), eps=0.0)[0]
    torch.testing.assert_close(adv[0, [0, 2, 3]], expected_row0)
    assert adv[0, 1] == 0.0
    assert torch.equal(adv[1:], torch.zeros(2, 4))
    # the batch std ignores NaNs too: equals the std of the scorable rewards
    adv_b = group_advantages(rewards, scale="batch", eps=0.0)
    valid = rewards[~torch.isnan(rewards)]
    mean0 = 2 / 3
    assert adv_b[0, 0].item() == pytest.approx((1 - mean0) / valid.std().item(), abs=1e-6)


def test_advantage_bad_input():
    with pytest.raises(ValueError, match="allowed"):
        group_advantages(torch.zeros(2, 2), scale="ddof0")
    with pytest.raises(ValueError, match="2-D"):
        group_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="eps"):
        group_advantages(torch.zeros(2, 2), eps=-1.0)


def test_kl_token_means(case: Case):
    m = case.mask
    expected = {"k1": -0.028252, "k2": 0.082052, "k3": 0.087952}
    for est, value in expected.items():
        k = kl_estimate(case.logp, case.logp_ref, est)
        assert masked_mean(k, m).item() == pytest.approx(value, abs=P6)
    k3 = kl_estimate(case.logp, case.logp_ref, "k3")
    torch.testing.assert_close(
        k3[0, :3],
        torch.tensor([0.042246, 0.039611, 0.095141], dtype=torch.float64),
        atol=P6,
        rtol=0,
    )
    seq1 = [kl_estimate(case.logp, case.logp_ref, e)[1, 0].item() for e in ("k1", "k2", "k3")]
    assert seq1 == pytest.approx([0.323144, 0.052211, 0.047013], abs=P6)


def test_kl_estimators_exact_expectations():
    """E over x ~ π of each estimator and of its autograd gradient, on a 4-way categorical."""
    z = torch.tensor([0.5, -0.3, 1.2, 0.0], dtype=torch.float64, requires_grad=True)
    pref = torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=torch.float64)
    logpi = torch.log_softmax(z, -1)
    pi = logpi.exp().detach()
    kl_rev = (pi * (pi.log() - pref.log())).sum().item()
    assert kl_rev == pytest.approx(0.282578, abs=P6)

    def expectation(est: str):
        value = torch.zeros((), dtype=torch.float64)
        grad = torch.zeros(4, dtype=torch.float64)
        for x in range(4):  # exact sum over outcomes, sampling distribution held fixed
            k = kl_estimate(logpi[x : x + 1], pref.log()[x : x + 1], est)[0]
            (g,) = torch.autograd.grad(k, z, retain_graph=True)
            value += pi[x] * k.detach()
            grad += pi[x] * g
        return value.item(), grad

    v1, g1 = expectation("k1")
    v2, g2 = expectation("k2")
    v3, g3 = expectation("k3")
    assert v1 == pytest.approx(kl_rev, abs=1e-12) and v3 == pytest.approx(kl_rev, abs=1e-12)
    assert v2 == pytest.approx(0.259187, abs=P6)
    torch.testing.assert_close(g1, torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)

    def exact_grad(kl_fn):
        zz = z.detach().clone().requires_grad_()
        (g,) = torch.autograd.grad(kl_fn(torch.softmax(zz, -1)), zz)
        return g

    grad_rev = exact_grad(lambda p: (p * (p.log() - pref.log())).sum())
    grad_fwd = exact_grad(lambda p: (pref * (pref.log() - p.log())).sum())
    torch.testing.assert_close(g2, grad_rev, atol=1e-12, rtol=0)
    torch.testing.assert_close(g3, grad_fwd, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        g2,
        torch.tensor([0.151479, -0.173327, 0.107797, -0.085949], dtype=torch.float64),
        atol=P6,
        rtol=0,
    )
    torch.testing.assert_close(
        g3,
        torch.tensor([0.145724, -0.289589, 0.194827, -0.050961], dtype=torch.float64),
        atol=P6,
        rtol=0,
    )
    torch.testing.assert_close(g3, pi - pref, atol=1e-12, rtol=0)


def test_kl_bad_estimator_and_clamp():
    with pytest.raises(ValueError, match="allowed"):
        kl_estimate(torch.zeros(1, 1), torch.zeros(1, 1), "k4")
    k3 = kl_estimate(torch.tensor([[-1000.0]]), torch.tensor([[0.0]]), "k3")
    assert torch.isfinite(k3).all()


@pytest.mark.parametrize(
    ("n", "expected"), [(10, 0.0), (12, 0.0), (13, -0.25), (15, -0.75), (16, -1.0), (17, -1.0)]
)
def test_soft_overlong_penalty(n, expected):
    assert soft_overlong_penalty(n, 16, 4) == pytest.approx(expected, abs=1e-15)


def test_soft_overlong_penalty_bad_input_and_hard_step():
    assert soft_overlong_penalty(16, 16, 0) == 0.0 and soft_overlong_penalty(17, 16, 0) == -1.0
    for args in ((-1, 16, 4), (5, 0, 0), (5, 16, 17), (5, 16, -1)):
        with pytest.raises(ValueError):
            soft_overlong_penalty(*args)


def test_dynamic_sampling():
    rewards = torch.tensor(
        [[1, 0, 1, 1], [0, 0.5, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.float64
    )
    assert keep_informative_groups(rewards).tolist() == [True, True, False, False]
    nan = math.nan
    r2 = torch.tensor([[1.0, nan, 1.0, 1.0], [nan, nan, nan, 0.0], [0.0, nan, nan, 1.0]])
    assert keep_informative_groups(r2).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="2-D"):
        keep_informative_groups(torch.zeros(3))


def test_aggregation_modes_by_hand():
    """The four modes of §10 on a 2×3 example, with NaN in the padding."""
    from burnish.algorithms import aggregate

    nan = float("nan")
    loss = torch.tensor([[1.0, 2.0, nan], [3.0, nan, nan]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(6 / 3)
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((1.5 + 3) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx(6 / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", norm_len=4).item() == pytest.approx(
        6 / 8
    )
    assert aggregate(loss, mask, "token-mean", num_tokens=12).item() == pytest.approx(0.5)
    assert aggregate(loss, mask, "seq-mean-token-mean", num_seqs=9).item() == pytest.approx(4.5 / 9)
    with pytest.raises(ValueError, match="allowed"):
        aggregate(loss, mask, "token-sum")
    with pytest.raises(ValueError, match="num_tokens must be > 0"):
        aggregate(loss, mask, "token-mean", num_tokens=0)
    with pytest.raises(ValueError, match="norm_len"):
        aggregate(loss, mask, "seq-mean-token-sum-norm")
    empty = torch.zeros(2, 3, dtype=torch.long)
    assert aggregate(loss, empty, "token-mean").item() == 0.0
