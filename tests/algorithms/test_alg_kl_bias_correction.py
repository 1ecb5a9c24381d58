"""Bias-corrected k3 (DeepSeek-V3.2, TRL ``use_bias_correction_kl``): ``r · k3`` with the ratio
``r = π / π_old`` kept in the graph (float64, arithmetic in the comments)."""

from __future__ import annotations

import math

import pytest
import torch
from grpo_case import Case

from burnish.algorithms import LossConfig, kl_estimate, masked_mean, policy_loss

LN2 = math.log(2.0)
D = torch.float64

# Two valid tokens and one padded one:
#   token 0: π = 0.5, π_old = 0.4, π_ref = 0.25 → r = 1.25, δ = ln 2,  e^{−δ} = 0.5
#            k3 = 0.5 − 1 + ln 2 = 0.193147,  r·k3 = 0.241434,  d(r·k3)/dlogp = r·δ = 0.866434
#   token 1: π = 0.3, π_old = 0.6, π_ref = 0.6  → r = 0.5,  δ = −ln 2, e^{−δ} = 2
#            k3 = 2 − 1 − ln 2 = 0.306853,  r·k3 = 0.153426,  d(r·k3)/dlogp = r·δ = −0.346574
PI, PI_OLD, PI_REF = [0.5, 0.3, 0.9], [0.4, 0.6, 0.9], [0.25, 0.6, 0.9]
R = [1.25, 0.5]
DELTA = [LN2, -LN2]
K3 = [0.5 - 1 + LN2, 2 - 1 - LN2]


def _inputs():
    logp = torch.tensor([PI], dtype=D).log().requires_grad_()
    old = torch.tensor([PI_OLD], dtype=D).log()
    ref = torch.tensor([PI_REF], dtype=D).log()
    mask = torch.tensor([[True, True, False]])
    return logp, old, ref, mask


def test_estimate_value_and_gradient_by_hand():
    logp, old, ref, _ = _inputs()
    k = kl_estimate(logp, ref, "k3", old_logp=old)
    expected = [R[0] * K3[0], R[1] * K3[1], 0.0]  # [0.241434, 0.153426, 0]: r = 1, δ = 0 on token 2
    torch.testing.assert_close(k, torch.tensor([expected], dtype=D), atol=1e-15, rtol=0)
    assert k[0, 0].item() == pytest.approx(0.241434, abs=1e-6)
    (g,) = torch.autograd.grad(k.sum(), logp)
    # ∇(r·k3) = r·k3 + r·(1 − e^{−δ}) = r·δ: [1.25 ln 2, −0.5 ln 2, 0]
    expected_g = [R[0] * DELTA[0], R[1] * DELTA[1], 0.0]
    torch.testing.assert_close(g, torch.tensor([expected_g], dtype=D), atol=1e-15, rtol=0)
    # the ratio is not detached: with it detached the gradient would be r·(1 − e^{−δ})
    detached = [R[0] * (1 - 0.5), R[1] * (1 - 2.0)]
    assert abs(g[0, 0].item() - detached[0]) > 0.1 and abs(g[0, 1].item() - detached[1]) > 0.1


def test_policy_loss_value_and_gradient_by_hand():
    """Â = 0 (no policy term), β = 0.1, token-mean over N = 2 valid tokens:
    L = 0.1 · (0.241434 + 0.153426) / 2 = 0.019743; dL/dlogp = 0.1 · r·δ / 2 = [0.043322, −0.017329].
    The padded token holds poison in every input and changes nothing.
    """
    logp, old, ref, mask = _inputs()
    with torch.no_grad():
        logp[0, 2], old[0, 2], ref[0, 2] = 1e4, math.nan, -math.inf
    cfg = LossConfig("dapo", kl_coef=0.1, kl_bias_correction=True)
    adv = torch.zeros(1, dtype=D)
    loss, m = policy_loss(logp, old, adv, mask, cfg, ref_logp=ref)
    loss.backward()
    expected = 0.1 * (R[0] * K3[0] + R[1] * K3[1]) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-15)
    assert loss.item() == pytest.approx(0.019743, abs=1e-6)
    g = [0.1 * R[0] * DELTA[0] / 2, 0.1 * R[1] * DELTA[1] / 2, 0.0]
    torch.testing.assert_close(logp.grad, torch.tensor([g], dtype=D), atol=1e-15, rtol=0)
    assert m["kl/mean"] == pytest.approx((R[0] * K3[0] + R[1] * K3[1]) / 2, abs=1e-15)
    # plain k3 on the same tokens: (0.193147 + 0.306853) / 2 · 0.1 = 0.025
    plain, _ = policy_loss(logp, old, adv, mask, LossConfig("dapo", kl_coef=0.1), ref_logp=ref)
    assert plain.item() == pytest.approx(0.1 * (K3[0] + K3[1]) / 2, abs=1e-15)
    assert plain.item() != pytest.approx(loss.item(), abs=1e-3)


def test_on_policy_value_equals_plain_k3_gradient_is_delta(case: Case):
    """old_logp = sg(logp) (the trainer's on-policy path): r ≡ 1, so the value is plain k3's
    (0.0031538108 − GRPO's policy term, §14 β = 0.04); the KL gradient per token is β·w·δ instead of
    β·w·(1 − e^{−δ}), w = 1 / (|o_i| · B) for seq-mean-token-mean."""
    results = {}
    for corrected in (False, True):
        logp = case.leaf()
        cfg = LossConfig("grpo", kl_coef=0.04, kl_bias_correction=corrected)
        loss, m = policy_loss(logp, logp.detach(), case.adv, case.mask, cfg, ref_logp=case.logp_ref)
        loss.backward()
        results[corrected] = loss.item(), logp.grad, m
    (l0, g0, m0), (l1, g1, m1) = results[False], results[True]
    assert l1 == l0 and m1["kl/mean"] == m0["kl/mean"]
    assert m1["kl/mean"] == pytest.approx(0.087952, abs=6e-7)
    mask = case.mask.double()
    w = mask / mask.sum(1, keepdim=True) / mask.shape[0]
    delta = torch.where(case.mask, case.logp - case.logp_ref, 0.0)
    # the policy gradient part is the same in both: subtract plain k3's KL gradient from g0
    g_pg = g0 - 0.04 * w * (1 - torch.exp(-delta))
    torch.testing.assert_close(g1, g_pg + 0.04 * w * delta, atol=1e-12, rtol=0)
    assert (g1 - g0).abs().max() > 1e-4


def test_on_policy_equal_tensors_give_plain_k3(case: Case):
    """old_logp numerically equal to logp (a separate tensor): r = 1, the estimate is plain k3."""
    plain = kl_estimate(case.logp, case.logp_ref, "k3")
    corrected = kl_estimate(case.logp, case.logp_ref, "k3", old_logp=case.logp.clone())
    assert torch.equal(plain, corrected)
    off = kl_estimate(case.logp, case.logp_ref, "k3", old_logp=case.logp_old)
    assert not torch.allclose(plain[case.mask], off[case.mask])


def test_unbiased_under_the_sampling_policy():
    """Exact sums over a 4-way categorical, tokens drawn from π_old ≠ π:
    E_{π_old}[r·k3] = KL(π‖π_ref) and E_{π_old}[∇(r·k3)] = ∇KL(π‖π_ref); plain k3 is biased."""
    z = torch.tensor([0.5, -0.3, 1.2, 0.0], dtype=D, requires_grad=True)
    p_old = torch.tensor([0.4, 0.3, 0.1, 0.2], dtype=D)
    p_ref = torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=D)
    logpi = torch.log_softmax(z, -1)
    pi = logpi.exp().detach()

    def expectation(old_logp):
        value = torch.zeros((), dtype=D)
        grad = torch.zeros(4, dtype=D)
        for x in range(4):  # exact expectation over x ~ π_old
            old = None if old_logp is None else old_logp[x : x + 1]
            k = kl_estimate(logpi[x : x + 1], p_ref.log()[x : x + 1], "k3", old_logp=old)[0]
            (g,) = torch.autograd.grad(k, z, retain_graph=True)
            value += p_old[x] * k.detach()
            grad += p_old[x] * g
        return value.item(), grad

    zz = z.detach().clone().requires_grad_()
    p = torch.softmax(zz, -1)
    kl_rev = (p * (p.log() - p_ref.log())).sum()
    (grad_rev,) = torch.autograd.grad(kl_rev, zz)
    value, grad = expectation(p_old.log())
    assert value == pytest.approx(kl_rev.item(), abs=1e-12)
    torch.testing.assert_close(grad, grad_rev, atol=1e-12, rtol=0)
    plain_value, plain_grad = expectation(None)
    assert abs(plain_value - kl_rev.item()) > 1e-2
    assert (plain_grad - grad_rev).abs().max() > 1e-2
    assert not torch.allclose(pi, p_old)


@pytest.mark.parametrize("estimator", ["k1", "k2"])
def test_only_k3_can_be_corrected(estimator):
    with pytest.raises(
        ValueError, match=r"kl_bias_correction applies only to kl_estimator \['k3'\]"
    ):
        LossConfig("grpo", kl_coef=0.1, kl_estimator=estimator, kl_bias_correction=True)
    zeros = torch.zeros(1, 2, dtype=D)
    with pytest.raises(ValueError, match=r"only to kl estimator \['k3'\]; got '" + estimator):
        kl_estimate(zeros, zeros, estimator, old_logp=zeros)


def test_old_logp_shape_is_checked():
    with pytest.raises(ValueError, match="old_logp"):
        kl_estimate(torch.zeros(2, 3), torch.zeros(2, 3), "k3", old_logp=torch.zeros(2, 2))


def test_metric_without_kl_in_the_loss(case: Case):
    """kl_coef = 0 with ref_logp given: kl/mean reports the corrected estimate, the loss has no KL."""
    cfg = LossConfig("grpo", kl_bias_correction=True)
    loss, m = policy_loss(
        case.logp, case.logp_old, case.adv, case.mask, cfg, ref_logp=case.logp_ref
    )
    k = kl_estimate(case.logp, case.logp_ref, "k3", old_logp=case.logp_old)
    assert m["kl/mean"] == pytest.approx(masked_mean(k, case.mask).item(), abs=1e-15)
    assert m["kl/mean"] != pytest.approx(0.087952, abs=1e-3)  # plain k3's mean
    assert m["loss/kl"] == 0.0
