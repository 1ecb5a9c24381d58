"""LossConfig defaults and validation: bad values raise ValueError naming what is allowed."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import pytest

from burnish.algorithms import LOSSES, LossConfig, Variant
from burnish.algorithms.losses import ppo_clip_loss


@pytest.mark.parametrize(
    ("name", "extra", "eps_low", "eps_high", "aggregation"),
    [
        ("grpo", {}, 0.2, 0.2, "seq-mean-token-mean"),
        ("dr_grpo", {"max_completion_len": 8}, 0.2, 0.2, "seq-mean-token-sum-norm"),
        ("dapo", {}, 0.2, 0.28, "token-mean"),
        ("cispo", {}, math.inf, 4.0, "token-mean"),
        ("gspo", {}, 3e-4, 4e-4, "seq-mean-token-mean"),
        ("gspo_token", {}, 3e-4, 4e-4, "seq-mean-token-mean"),
    ],
)
def test_variant_defaults(name, extra, eps_low, eps_high, aggregation):
    cfg = LossConfig(name, **extra)
    assert cfg.eps_low is None  # the user's config is not rewritten
    r = cfg.resolved()
    assert (r.eps_low, r.eps_high, r.aggregation) == (eps_low, eps_high, aggregation)
    assert LossConfig(name, eps_low=0.1, eps_high=0.3, **extra).resolved().eps_high == 0.3


def test_frozen():
    with pytest.raises(FrozenInstanceError):
        LossConfig("dapo").eps_low = 0.1  # type: ignore[misc]


def test_every_variant_is_in_the_table():
    assert set(LOSSES) == {"grpo", "dr_grpo", "dapo", "cispo", "gspo", "gspo_token"}
    assert all(isinstance(v, Variant) for v in LOSSES.values())


def test_trainer_defaults_are_in_the_table():
    """Dr. GRPO drops the std from the advantages and DAPO samples dynamically; nobody else does."""
    scales = {name: v.advantage_scale for name, v in LOSSES.items()}
    assert scales == {name: "none" if name == "dr_grpo" else "group" for name in LOSSES}
    assert [name for name, v in LOSSES.items() if v.dynamic_sampling] == ["dapo"]
    assert [name for name, v in LOSSES.items() if not v.dual_clip] == ["cispo"]


def test_grpo_dr_grpo_and_dapo_share_one_function():
    assert {LOSSES[n].fn for n in ("grpo", "dr_grpo", "dapo")} == {ppo_clip_loss}
    assert len({v.fn for v in LOSSES.values()}) == 4  # ppo_clip, cispo, gspo, gspo_token


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps_low": -0.1}, "Variant.eps_low must be >= 0"),
        ({"eps_high": math.nan}, "Variant.eps_high must be >= 0"),
        ({"aggregation": "token-sum"}, r"'token-sum' must be in Variant.aggregations \["),
        ({"aggregations": ()}, r"'token-mean' must be in Variant.aggregations \[\]"),
        ({"aggregations": ("token-mean", "token-sum")}, r"a subset of \['seq-mean-token-mean'"),
        ({"aggregations": ("seq-mean-token-sum",)}, r"must be in .* \['seq-mean-token-sum'\]"),
        ({"advantage_scale": "std"}, r"advantage_scale 'std'; allowed: \['batch', 'group'"),
    ],
)
def test_invalid_variants_raise(kwargs, match):
    fields = {"fn": ppo_clip_loss, "eps_low": 0.2, "eps_high": 0.2, "aggregation": "token-mean"}
    with pytest.raises(ValueError, match=match):
        Variant(**{**fields, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "ppo"}, r"unknown loss name 'ppo'; allowed: \['cispo', 'dapo'"),
        ({"name": "dapo", "eps_low": -0.1}, "eps_low must be >= 0"),
        ({"name": "dapo", "eps_high": -1.0}, "eps_high must be >= 0"),
        (
            {"name": "dapo", "aggregation": "token-sum"},
            r"unknown aggregation 'token-sum'; allowed: \[",
        ),
        (
            {"name": "gspo", "aggregation": "token-mean"},
            r"cannot use aggregation 'token-mean'; allowed: \['seq-mean-token-mean'\]",
        ),
        ({"name": "dr_grpo"}, "needs max_completion_len"),
        ({"name": "dapo", "aggregation": "seq-mean-token-sum-norm"}, "needs max_completion_len"),
        ({"name": "dapo", "max_completion_len": 0}, "max_completion_len must be >= 1"),
        ({"name": "dapo", "dual_clip": 1.0}, "dual_clip must be > 1"),
        ({"name": "dapo", "dual_clip": 0.5}, "dual_clip must be > 1"),
        (
            {"name": "cispo", "dual_clip": 3.0},
            "dual_clip does not apply to loss 'cispo'; allowed with",
        ),
        ({"name": "dapo", "entropy_gate_quantile": 0.0}, r"open interval \(0, 1\)"),
        ({"name": "dapo", "entropy_gate_quantile": 1.0}, r"open interval \(0, 1\)"),
        (
            {"name": "dapo", "kl_estimator": "k4"},
            r"unknown kl_estimator 'k4'; allowed: \['k1', 'k2', 'k3'\]",
        ),
        ({"name": "dapo", "kl_coef": -0.1}, "kl_coef must be >= 0"),
        ({"name": "dapo", "entropy_coef": math.nan}, "entropy_coef must be finite"),
    ],
)
def test_invalid_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**kwargs)
