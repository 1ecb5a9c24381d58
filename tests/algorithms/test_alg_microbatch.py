"""Behaviour lock: gradient accumulation over micro-batches equals the full-batch gradient.

Do not relax this test without an explicit decision: a loss whose normaliser is computed per
micro-batch makes the update depend on the micro-batch size (TRL "grpo" does; verl and burnish
pass the optimizer step's token and sequence counts instead).
"""

from __future__ import annotations

import pytest
import torch
from grpo_case import Case

from burnish.algorithms import AGGREGATIONS, LOSSES, LossConfig, entropy_gate_threshold, policy_loss

CASES = [(name, agg) for name, v in sorted(LOSSES.items()) for agg in v.aggregations]


def _config(name: str, agg: str, kl_bias_correction: bool = False) -> LossConfig:
    extra = {"dual_clip": 3.0} if LOSSES[name].dual_clip else {}
    eps = {"eps_low": 0.2, "eps_high": 0.28} if name.startswith("gspo") else {}
    return LossConfig(
        name,
        aggregation=agg,
        max_completion_len=8,
        kl_coef=0.04,
        kl_bias_correction=kl_bias_correction,
        entropy_coef=0.01,
        entropy_gate_quantile=0.5,
        **eps,
        **extra,
    )


def _grads(c: Case, cfg: LossConfig, rows: list[slice], step_norms: bool):
    logp = c.leaf()
    ent = c.leaf("entropy")
    thr = entropy_gate_threshold(c.entropy, c.mask, cfg.entropy_gate_quantile)
    norms = {"num_tokens": c.mask.sum(), "num_seqs": c.mask.shape[0]} if step_norms else {}
    total = 0.0
    for sl in rows:
        loss, _ = policy_loss(
            logp[sl],
            c.logp_old[sl],
            c.adv[sl],
            c.mask[sl],
            cfg,
            ref_logp=c.logp_ref[sl],
            entropy=ent[sl],
            entropy_threshold=thr,
            **norms,
        )
        loss.backward()
        total += loss.item()
    return total, logp.grad, ent.grad


@pytest.mark.parametrize(("name", "agg"), CASES)
@pytest.mark.parametrize("micro", [1, 2, 4])
@pytest.mark.parametrize("kl_bias_correction", [False, True])
def test_micro_batches_sum_to_full_batch(case: Case, name, agg, micro, kl_bias_correction):
    cfg = _config(name, agg, kl_bias_correction)
    full_loss, full_g, full_ge = _grads(case, cfg, [slice(0, 8)], step_norms=False)
    rows = [slice(i, i + micro) for i in range(0, 8, micro)]
    loss, g, ge = _grads(case, cfg, rows, step_norms=True)
    assert loss == pytest.approx(full_loss, abs=1e-12)
    torch.testing.assert_close(g, full_g, atol=1e-12, rtol=0)
    torch.testing.assert_close(ge, full_ge, atol=1e-12, rtol=0)
    assert full_g.abs().sum() > 0


def test_local_normalisers_would_differ(case: Case):
    """Sanity check that the lock can fail: without the step's normalisers token-mean differs."""
    cfg = _config("dapo", "token-mean")
    _, full_g, _ = _grads(case, cfg, [slice(0, 8)], step_norms=False)
    _, g, _ = _grads(case, cfg, [slice(i, i + 2) for i in range(0, 8, 2)], step_norms=False)
    assert not torch.allclose(g, full_g)


def test_all_aggregations_covered():
    assert {agg for _, agg in CASES} == set(AGGREGATIONS)
