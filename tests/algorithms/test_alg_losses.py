"""Loss values and gradients against algorithms.md §14 (float64).

Printed §14 numbers carry 6 decimals, so they are compared at 6e-7; the Appendix A closed forms
(`grpo_case.reference_*`) and the 10-digit values are compared at 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from grpo_case import (
    LENGTHS,
    R_TARGET,
    B,
    Case,
    G,
    build_case,
    reference_gspo,
    reference_ppo,
)

from burnish.algorithms import LOSSES, LossConfig, Variant, policy_loss

PRINTED = 6e-7  # half a unit in the 6th decimal, plus float noise
EXACT = 1e-9

GRAD_GRPO = [
    [0.0, -0.022917, -0.014583, 0, 0],
    [0.046875, 0.0, 0.0375, 0.050625, 0.03375],
    [-0.01875, -0.036875, 0, 0, 0],
    [-0.016406, -0.014844, 0.0, -0.013281, 0],
    [0.034272, 0.020073, 0.026928, 0.0, 0],
    [0.0, 0, 0, 0, 0],
    [0.029376, 0.037535, 0.0, 0, 0],
    [-0.035904, 0.0, -0.025459, 0.0, -0.03264],
]
GRAD_DAPO = [
    [0.0, -0.02037, -0.012963, 0, 0],
    [0.069444, 0.0, 0.055556, 0.075, 0.05],
    [-0.011111, -0.021852, 0, 0, 0],
    [-0.019444, -0.017593, 0.0, -0.015741, 0],
    [0.040618, 0.023791, 0.031914, 0.0, 0],
    [-0.012089, 0, 0, 0, 0],
    [0.026112, 0.033365, 0.0, 0, 0],
    [-0.05319, -0.061411, -0.037717, 0.0, -0.048355],
]
GRAD_GRPO_KL = [
    [0.000439, -0.022491, -0.01542, 0, 0],
    [0.047151, -0.0008, 0.0375, 0.051128, 0.033393],
    [-0.0216, -0.03639, 0, 0, 0],
    [-0.016347, -0.015122, 0.000538, -0.013657, 0],
    [0.034791, 0.019639, 0.026983, -0.001479, 0],
    [-0.000967, 0, 0, 0, 0],
    [0.029448, 0.037432, -0.000965, 0, 0],
    [-0.035859, 0.000387, -0.026189, 0.000376, -0.03264],
]
GRAD_DR_GRPO = [
    [0.0, -0.004297, -0.002734, 0, 0],
    [0.014648, 0.0, 0.011719, 0.01582, 0.010547],
    [-0.002344, -0.004609, 0, 0, 0],
    [-0.004102, -0.003711, 0.0, -0.00332, 0],
    [0.008203, 0.004805, 0.006445, 0.0, 0],
    [0.0, 0, 0, 0, 0],
    [0.005273, 0.006738, 0.0, 0, 0],
    [-0.010742, 0.0, -0.007617, 0.0, -0.009766],
]
GRAD_CISPO = [
    [-0.022222, -0.02037, -0.012963, 0, 0],
    [0.066667, 0.041667, 0.055556, 0.066667, 0.05],
    [-0.011111, -0.021852, 0, 0, 0],
    [-0.019444, -0.017593, -0.022222, -0.015741, 0],
    [0.034816, 0.023791, 0.031914, 0.018858, 0],
    [-0.011605, 0, 0, 0, 0],
    [0.026112, 0.033365, 0.020309, 0, 0],
    [-0.05319, -0.058026, -0.037717, -0.058026, -0.048355],
]
GSPO_ROWS = [-0.021858, 0.038489, -0.026295, -0.01601, 0.023301, -0.040799, 0.029315, -0.035766]
GSPO_SMALL_ROWS = [-0.020835, 0.037512, -0.031244, -0.015626, 0, -0.032649, 0.032642, 0]


def run(c: Case, cfg: LossConfig, *, adv=None, logp_name="logp", **kw):
    """Loss, dL/dlogp and metrics for the §14 case."""
    logp = c.leaf(logp_name)
    adv = c.adv if adv is None else adv
    loss, metrics = policy_loss(logp, c.logp_old, adv, c.mask, cfg, **kw)
    loss.backward()
    return loss.item(), logp.grad, metrics


def assert_grad(grad: torch.Tensor, expected, atol: float) -> None:
    exp = torch.as_tensor(np.asarray(expected, dtype=np.float64))
    torch.testing.assert_close(grad, exp, atol=atol, rtol=0)


def test_grpo_value_and_gradient(case: Case):
    loss, grad, m = run(case, LossConfig("grpo"))
    assert loss == pytest.approx(-0.0002816127, abs=EXACT)
    assert_grad(grad, GRAD_GRPO, PRINTED)
    ref_loss, ref_grad = reference_ppo(case, case.np("adv"), 0.2, 0.2, "seq-mean-token-mean")
    assert loss == pytest.approx(ref_loss, abs=EXACT)
    assert_grad(grad, ref_grad, EXACT)
    assert m["loss/policy"] == pytest.approx(loss, abs=1e-15)
    assert m["loss/kl"] == 0.0 and m["loss/entropy_bonus"] == 0.0


def test_grpo_per_sequence_objectives(case: Case):
    """J_i of §14.3: loss of one sequence alone (num_seqs=1) is −J_i."""
    expected = [0.5, -1.59, 0.445, 0.50625, -0.80685, 0.31334, -0.744182, 1.378695]
    for i, j in enumerate(expected):
        sl = slice(i, i + 1)
        loss, _ = policy_loss(
            case.logp[sl], case.logp_old[sl], case.adv[sl], case.mask[sl], LossConfig("grpo")
        )
        assert loss.item() == pytest.approx(-j, abs=PRINTED)


def test_grpo_with_k3_kl(case: Case):
    cfg = LossConfig("grpo", kl_coef=0.04, kl_estimator="k3")
    loss, grad, m = run(case, cfg, ref_logp=case.logp_ref)
    assert loss == pytest.approx(0.0031538108, abs=EXACT)
    assert_grad(grad, GRAD_GRPO_KL, PRINTED)
    # the KL term adds β·w·(1 − exp(ref − logp)) to the policy gradient (Appendix A)
    _, g_pg = reference_ppo(case, case.np("adv"), 0.2, 0.2, "seq-mean-token-mean")
    w = g_pg * 0 + np.where(case.np("mask") > 0, 1 / case.np("mask").sum(1)[:, None] / B, 0)
    g_kl = 0.04 * w * (1 - np.exp(case.np("logp_ref") - case.np("logp")))
    assert_grad(grad, g_pg + g_kl, EXACT)
    assert m["loss/kl"] == pytest.approx(loss - m["loss/policy"], abs=1e-15)
    assert m["kl/mean"] == pytest.approx(0.087952, abs=PRINTED)


def test_dapo_value_gradient_and_clip_metrics(case: Case):
    loss, grad, m = run(case, LossConfig("dapo"))
    assert loss == pytest.approx(0.0555273161, abs=EXACT)
    assert_grad(grad, GRAD_DAPO, PRINTED)
    ref_loss, ref_grad = reference_ppo(case, case.np("adv"), 0.2, 0.28, "token-mean")
    assert loss == pytest.approx(ref_loss, abs=EXACT)
    assert_grad(grad, ref_grad, EXACT)
    assert m["clip/low_frac"] == pytest.approx(3 / 27)
    assert m["clip/high_frac"] == pytest.approx(3 / 27)
    assert m["ratio/max"] == pytest.approx(1.5)
    r_valid = torch.tensor(
        [x for row, n in zip(R_TARGET, LENGTHS) for x in row[:n]], dtype=torch.float64
    )
    assert m["ratio/mean"] == pytest.approx(r_valid.mean().item(), abs=1e-12)


def test_clip_higher_is_visible(case: Case):
    """seq5 t0 (r = 1.25) and seq7 t1 (r = 1.27), Â > 0: zero gradient at 0.2, non-zero at 0.28."""
    _, g_sym, _ = run(case, LossConfig("dapo", eps_high=0.2))
    _, g_high, _ = run(case, LossConfig("dapo"))
    for i, t in ((5, 0), (7, 1)):
        assert g_sym[i, t] == 0.0
        assert g_high[i, t] != 0.0


def test_dr_grpo_value_and_gradient(case: Case):
    cfg = LossConfig("dr_grpo", max_completion_len=8)
    loss, grad, _ = run(case, cfg, adv=case.adv_none)
    assert loss == pytest.approx(0.01455078125, abs=EXACT)
    assert_grad(grad, GRAD_DR_GRPO, PRINTED)
    _, ref_grad = reference_ppo(case, case.np("adv_none"), 0.2, 0.2, "seq-mean-token-sum-norm", 8)
    assert_grad(grad, ref_grad, EXACT)
    loss5, _, _ = run(case, LossConfig("dr_grpo", max_completion_len=5), adv=case.adv_none)
    assert loss5 == pytest.approx(0.023281, abs=PRINTED)


@pytest.mark.parametrize(
    ("eps", "expected"), [({"eps_low": 10.0, "eps_high": 0.2}, -0.1462420777), ({}, -0.142591)]
)
def test_cispo_value(case: Case, eps, expected):
    """verl example settings (10 / 0.2) and the default cap 1 + 4 = 5 (= TRL epsilon_high=5)."""
    loss, _, _ = run(case, LossConfig("cispo", **eps))
    assert loss == pytest.approx(expected, abs=EXACT if len(str(expected)) > 10 else PRINTED)


def test_cispo_gradient_keeps_every_token(case: Case):
    _, grad, m = run(case, LossConfig("cispo", eps_high=0.2))
    assert_grad(grad, GRAD_CISPO, PRINTED)
    # closed form: −min(r, 1.2) · Â / N on every valid token
    r = np.exp(case.np("logp") - case.np("logp_old"))
    mask = case.np("mask")
    expected = np.where(mask > 0, -np.minimum(r, 1.2) * case.np("adv")[:, None] / mask.sum(), 0)
    assert_grad(grad, expected, EXACT)
    assert bool((grad[case.mask] != 0).all())
    n_capped = int(((r > 1.2) & (mask > 0)).sum())
    assert m["cispo/capped_frac"] == pytest.approx(n_capped / 27)
    assert n_capped > 0


def test_cispo_default_is_not_capped_below_five(case: Case):
    """Default ε_high = 4: a ratio of 4.5 keeps weight 4.5, a ratio of 7 is capped at 5."""
    mask = torch.ones(1, 2, dtype=torch.bool)
    old = torch.zeros(1, 2, dtype=torch.float64)
    logp = torch.log(torch.tensor([[4.5, 7.0]], dtype=torch.float64)).requires_grad_()
    loss, m = policy_loss(
        logp, old, torch.tensor([1.0], dtype=torch.float64), mask, LossConfig("cispo")
    )
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-4.5 / 2, -5.0 / 2]], dtype=torch.float64))
    assert m["cispo/capped_frac"] == 0.5


@pytest.mark.parametrize("eps_high", [0.2, 1.0, 4.0])
def test_cispo_cap_is_one_plus_eps_high(eps_high):
    """MiniMax-M1 notation: the IS weight is capped at 1 + eps_high, not at eps_high (TRL's).

    Two tokens, Â = 1, old_logp = 0, token-mean over N = 2, so dL/dlogp = −min(r, 1 + ε) / 2:
    r = 1 + ε/2 is under the cap (weight r), r = 2(1 + ε) is over it (weight 1 + ε).
    """
    cap = 1.0 + eps_high
    r = torch.tensor([[1.0 + eps_high / 2, 2.0 * cap]], dtype=torch.float64)
    logp = r.log().requires_grad_()
    loss, m = policy_loss(
        logp,
        torch.zeros_like(r),
        torch.tensor([1.0], dtype=torch.float64),
        torch.ones(1, 2, dtype=torch.bool),
        LossConfig("cispo", eps_high=eps_high),
    )
    loss.backward()
    expected = torch.tensor([[-(1.0 + eps_high / 2) / 2, -cap / 2]], dtype=torch.float64)
    torch.testing.assert_close(logp.grad, expected, atol=1e-15, rtol=0)
    assert m["cispo/capped_frac"] == 0.5


def test_cispo_trl_epsilon_high_is_burnish_plus_one():
    """TRL's cap epsilon_high = 5 is burnish eps_high = 4; passing 5 here caps at 6 instead.

    One token with r = 7, Â = 1, N = 1: dL/dlogp = −min(7, 1 + ε) → −5 at ε = 4, −6 at ε = 5.
    """

    def grad(eps_high: float) -> float:
        logp = torch.tensor([[math.log(7.0)]], dtype=torch.float64, requires_grad=True)
        one = torch.ones(1, dtype=torch.float64)
        mask = torch.ones(1, 1, dtype=torch.bool)
        cfg = LossConfig("cispo", eps_high=eps_high)
        policy_loss(logp, torch.zeros_like(logp), one, mask, cfg)[0].backward()
        return logp.grad.item()

    assert grad(4.0) == pytest.approx(-5.0, abs=1e-12)  # = TRL epsilon_high=5, the default
    assert grad(5.0) == pytest.approx(-6.0, abs=1e-12)
    assert LossConfig("cispo").resolved().eps_high == 4.0


def _reinforce_loss(logp, old_logp, adv_B, mask, cfg):
    """A test-only variant: ``ℓ = −Â · logp`` (REINFORCE, no ratio)."""
    return -adv_B[:, None] * logp, {"ratio/mean": torch.ones((), dtype=logp.dtype)}


def test_adding_a_variant_is_one_table_entry(monkeypatch):
    """A new `Variant` in `LOSSES` is usable by `LossConfig` and `policy_loss` with no other edit.

    B = 2, mask [[1, 1], [1, 0]], logp [[−1, −2], [−0.5, NaN]], Â = [1, −2], token-mean (N = 3):
    ℓ = −Â·logp = [[1, 2], [−1, ·]] → L = (1 + 2 − 1) / 3 = 2/3; dL/dlogp = −Â / 3 on valid tokens.
    """
    variant = Variant(_reinforce_loss, 0.0, 0.0, "token-mean", dual_clip=False)
    monkeypatch.setitem(LOSSES, "reinforce", variant)
    cfg = LossConfig("reinforce")
    assert cfg.resolved().aggregation == "token-mean"
    assert "reinforce" in tuple(LOSSES)
    logp = torch.tensor([[-1.0, -2.0], [-0.5, math.nan]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    loss, m = policy_loss(logp, torch.zeros_like(logp).detach(), adv, mask, cfg)
    loss.backward()
    assert loss.item() == pytest.approx(2 / 3, abs=1e-15)
    expected = torch.tensor([[-1 / 3, -1 / 3], [2 / 3, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(logp.grad, expected, atol=1e-15, rtol=0)
    assert m["loss/total"] == pytest.approx(2 / 3, abs=1e-15)
    with pytest.raises(ValueError, match="dual_clip does not apply to loss 'reinforce'"):
        LossConfig("reinforce", dual_clip=3.0)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="unknown loss name 'reinforce'"):
        LossConfig("reinforce")


def test_gspo_mechanics_at_02_028(case: Case):
    loss, grad, m = run(case, LossConfig("gspo", eps_low=0.2, eps_high=0.28))
    assert loss == pytest.approx(-0.028242, abs=PRINTED)
    ref_loss, ref_grad, s = reference_gspo(case, case.np("logp"), case.np("adv"), 0.2, 0.28)
    assert loss == pytest.approx(ref_loss, abs=EXACT)
    assert_grad(grad, ref_grad, EXACT)
    rows = np.asarray(GSPO_ROWS)[:, None] * case.np("mask")
    assert_grad(grad, rows, PRINTED)
    np.testing.assert_allclose(
        s,
        [1.049206, 1.026383, 0.841427, 1.024634, 0.951836, 1.25, 0.898144, 1.095801],
        atol=PRINTED,
    )
    assert m["ratio/max"] == pytest.approx(1.25)


def test_gspo_paper_clip_range(case: Case):
    loss, grad, m = run(case, LossConfig("gspo"), logp_name="logp_small")
    assert loss == pytest.approx(-3.63496e-05, abs=1e-10)
    ref_loss, ref_grad, _ = reference_gspo(case, case.np("logp_small"), case.np("adv"), 3e-4, 4e-4)
    assert loss == pytest.approx(ref_loss, abs=EXACT)
    assert_grad(grad, ref_grad, EXACT)
    assert_grad(grad, np.asarray(GSPO_SMALL_ROWS)[:, None] * case.np("mask"), PRINTED)
    # seq4 (4 tokens, Â<0, below 1−3e-4) and seq7 (5 tokens, Â>0, above 1+4e-4) are clipped
    assert m["clip/low_frac"] == pytest.approx(4 / 27)
    assert m["clip/high_frac"] == pytest.approx(5 / 27)


@pytest.mark.parametrize("logp_name", ["logp", "logp_small"])
def test_gspo_token_equals_gspo(case: Case, logp_name):
    for eps in ({}, {"eps_low": 0.2, "eps_high": 0.28}):
        l1, g1, _ = run(case, LossConfig("gspo", **eps), logp_name=logp_name)
        l2, g2, _ = run(case, LossConfig("gspo_token", **eps), logp_name=logp_name)
        assert l1 == pytest.approx(l2, abs=EXACT)
        torch.testing.assert_close(g1, g2, atol=EXACT, rtol=0)


def test_on_policy_values(case: Case):
    """logp = logp_old: r ≡ 1; GRPO 0, DAPO 0.062756, Dr. GRPO (L_max 8) 0.013672."""

    def on_policy(cfg, adv):
        logp = case.logp_old.clone().requires_grad_()
        return policy_loss(logp, case.logp_old, adv, case.mask, cfg)[0].item()

    assert on_policy(LossConfig("grpo"), case.adv) == pytest.approx(0.0, abs=1e-15)
    assert on_policy(LossConfig("dapo"), case.adv) == pytest.approx(0.062756, abs=PRINTED)
    dr = on_policy(LossConfig("dr_grpo", max_completion_len=8), case.adv_none)
    assert dr == pytest.approx(0.013672, abs=PRINTED)
    # token-mean on-policy: −Σ|o_i|Â_i / N exactly
    lengths = case.mask.sum(1).double()
    assert on_policy(LossConfig("dapo"), case.adv) == pytest.approx(
        (-(lengths * case.adv).sum() / 27).item(), abs=EXACT
    )


def test_gspo_on_policy_gradient_equals_grpo(case: Case):
    """On-policy, s_i ≡ 1 and GSPO's gradient is GRPO-with-seq-mean-token-mean's (§7)."""
    grads = []
    for name in ("gspo", "grpo"):
        logp = case.logp_old.clone().requires_grad_()
        policy_loss(logp, case.logp_old, case.adv, case.mask, LossConfig(name))[0].backward()
        grads.append(logp.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=EXACT, rtol=0)


def test_entropy_gate_80_20(case: Case):
    from burnish.algorithms import entropy_gate_threshold

    thr = entropy_gate_threshold(case.entropy, case.mask, 0.8)
    assert thr.item() == pytest.approx(1.07, abs=EXACT)
    cfg = LossConfig("dapo", entropy_gate_quantile=0.8)
    loss, grad, m = run(case, cfg, entropy=case.entropy)
    assert loss == pytest.approx(0.0135901668, abs=EXACT)
    kept = torch.zeros(B, 5, dtype=torch.bool)
    for i, t in ((0, 1), (1, 0), (3, 1), (4, 2), (5, 0), (7, 2)):
        kept[i, t] = True
    dapo = torch.tensor(GRAD_DAPO, dtype=torch.float64)
    assert_grad(grad, torch.where(kept, dapo, 0.0), PRINTED)
    assert grad[1, 0].item() == pytest.approx(0.069444, abs=PRINTED)
    assert grad[7, 2].item() == pytest.approx(-0.037717, abs=PRINTED)
    assert m["entropy/gate_frac"] == pytest.approx(6 / 27)
    # a precomputed threshold gives the same loss
    loss2, _, _ = run(case, cfg, entropy=case.entropy, entropy_threshold=thr)
    assert loss2 == pytest.approx(loss, abs=1e-15)


def test_entropy_gate_matches_torch_quantile():
    torch.manual_seed(1)
    h = torch.rand(6, 7, dtype=torch.float64)
    mask = torch.rand(6, 7) > 0.3
    from burnish.algorithms import entropy_gate_threshold

    for q in (0.1, 0.5, 0.8, 0.95):
        expected = torch.quantile(h[mask], q)
        assert entropy_gate_threshold(h, mask, q).item() == pytest.approx(
            expected.item(), abs=1e-12
        )


def test_entropy_bonus(case: Case):
    ent = case.leaf("entropy")
    logp = case.leaf()
    cfg = LossConfig("dapo", entropy_coef=0.01)
    loss, m = policy_loss(logp, case.logp_old, case.adv, case.mask, cfg, entropy=ent)
    assert loss.item() == pytest.approx(0.049613, abs=PRINTED)
    assert loss.item() == pytest.approx(0.0555273161 - 0.01 * 0.591481, abs=PRINTED)
    assert m["entropy/mean"] == pytest.approx(0.591481, abs=PRINTED)
    assert m["loss/entropy_bonus"] == pytest.approx(-0.01 * m["entropy/mean"], abs=1e-12)
    loss.backward()  # the entropy keeps its graph: dL/dH = −α / N on valid tokens, 0 on padding
    expected = case.mask.double() * (-0.01 / 27)
    torch.testing.assert_close(ent.grad, expected, atol=1e-15, rtol=0)
    # seq-mean-token-mean aggregates H̄ as verl does
    _, m2 = policy_loss(
        case.logp,
        case.logp_old,
        case.adv,
        case.mask,
        LossConfig("grpo", entropy_coef=1.0),
        entropy=case.entropy,
    )
    assert m2["loss/entropy_bonus"] == pytest.approx(-0.611729, abs=PRINTED)


def test_dual_clip():
    """One token, r = 4, Â = −1, ε = 0.2: PPO loss 4.0; dual clip c = 3 caps it at 3.0 (no grad)."""
    mask = torch.ones(1, 1, dtype=torch.bool)
    old = torch.zeros(1, 1, dtype=torch.float64)
    adv = torch.tensor([-1.0], dtype=torch.float64)
    logp = torch.log(torch.tensor([[4.0]], dtype=torch.float64)).requires_grad_()
    plain, _ = policy_loss(logp, old, adv, mask, LossConfig("grpo"))
    capped, m = policy_loss(logp, old, adv, mask, LossConfig("grpo", dual_clip=3.0))
    assert plain.item() == pytest.approx(4.0, abs=1e-12)
    assert capped.item() == pytest.approx(3.0, abs=1e-12)
    assert m["clip/dual_frac"] == 1.0
    (g,) = torch.autograd.grad(capped, logp)
    assert g.item() == 0.0
    # positive advantages are untouched by the dual clip
    pos = torch.tensor([1.0], dtype=torch.float64)
    a, _ = policy_loss(logp, old, pos, mask, LossConfig("grpo", dual_clip=3.0))
    b, _ = policy_loss(logp, old, pos, mask, LossConfig("grpo"))
    assert a.item() == b.item()


VARIANT_CONFIGS = {
    "grpo": LossConfig("grpo", kl_coef=0.04),
    "dr_grpo": LossConfig("dr_grpo", max_completion_len=8),
    "dapo": LossConfig("dapo", entropy_coef=0.01, entropy_gate_quantile=0.8),
    "cispo": LossConfig("cispo", eps_high=0.2),
    "gspo": LossConfig("gspo", eps_low=0.2, eps_high=0.28),
    "gspo_token": LossConfig("gspo_token", eps_low=0.2, eps_high=0.28),
    "grpo_kl_bias_correction": LossConfig("grpo", kl_coef=0.04, kl_bias_correction=True),
    "gspo_kl_bias_correction": LossConfig(
        "gspo", eps_low=0.2, eps_high=0.28, kl_coef=0.04, kl_bias_correction=True
    ),
}


def _full(c: Case, cfg: LossConfig, logp: torch.Tensor):
    return policy_loss(logp, c.logp_old, c.adv, c.mask, cfg, ref_logp=c.logp_ref, entropy=c.entropy)


@pytest.mark.parametrize("name", sorted(VARIANT_CONFIGS))
def test_padding_poison_changes_nothing(case: Case, name):
    cfg = VARIANT_CONFIGS[name]
    logp = case.leaf()
    loss, m = _full(case, cfg, logp)
    loss.backward()
    other = build_case()
    pad = ~other.mask
    for t, v in (
        (other.logp, 1e4),
        (other.logp_old, float("nan")),
        (other.logp_ref, -1e4),
        (other.entropy, float("inf")),
    ):
        t[pad] = v
    logp2 = other.leaf()
    loss2, m2 = _full(other, cfg, logp2)
    loss2.backward()
    assert loss2.item() == loss.item()
    assert torch.equal(logp2.grad, logp.grad)
    assert bool((logp.grad[pad] == 0).all())
    assert m == m2


@pytest.mark.parametrize("name", sorted(VARIANT_CONFIGS))
def test_permuting_sequences_with_their_groups(case: Case, name):
    """Shuffle sequences (and their advantages, computed per group before) -> same loss."""
    from burnish.algorithms import group_advantages

    cfg = VARIANT_CONFIGS[name]
    adv = group_advantages(case.rewards.view(-1, G), eps=0.0).reshape(-1)
    perm = torch.tensor([6, 2, 0, 7, 4, 1, 5, 3])
    loss, _ = policy_loss(
        case.logp, case.logp_old, adv, case.mask, cfg, ref_logp=case.logp_ref, entropy=case.entropy
    )
    # permute rewards with their group ids, recompute advantages per group, then gather
    group_of = torch.arange(B) // G
    rewards_p, groups_p = case.rewards[perm], group_of[perm]
    adv_p = torch.empty(B, dtype=torch.float64)
    for g in range(B // G):
        sel = groups_p == g
        adv_p[sel] = group_advantages(rewards_p[sel][None], eps=0.0)[0]
    loss_p, _ = policy_loss(
        case.logp[perm],
        case.logp_old[perm],
        adv_p,
        case.mask[perm],
        cfg,
        ref_logp=case.logp_ref[perm],
        entropy=case.entropy[perm],
    )
    assert loss_p.item() == pytest.approx(loss.item(), abs=1e-15)


def test_missing_inputs_raise(case: Case):
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(case.logp, case.logp_old, case.adv, case.mask, LossConfig("grpo", kl_coef=0.1))
    with pytest.raises(ValueError, match="entropy"):
        policy_loss(
            case.logp,
            case.logp_old,
            case.adv,
            case.mask,
            LossConfig("dapo", entropy_gate_quantile=0.8),
        )
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(case.logp, case.logp_old, case.adv[:3], case.mask, LossConfig("dapo"))
    with pytest.raises(ValueError, match="old_logp"):
        policy_loss(case.logp, case.logp_old[:, :2], case.adv, case.mask, LossConfig("dapo"))


def test_metrics_are_plain_floats(case: Case):
    _, m = _full(case, VARIANT_CONFIGS["dapo"], case.leaf())
    expected = {
        "loss/policy",
        "loss/kl",
        "loss/entropy_bonus",
        "clip/low_frac",
        "clip/high_frac",
        "ratio/mean",
        "ratio/max",
        "kl/mean",
        "entropy/mean",
    }
    assert expected <= set(m)
    assert all(type(v) is float for v in m.values())
