"""The `[scale]` section without Ray: what is refused at load, and that the default
single-process run never imports Ray (burnish runs where Ray is not installed)."""

import json
import sys

import pytest
from train_helpers import run_overrides

from burnish.config import ConfigError, load_config
from burnish.train.loop import train


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["scale.max_off_policy_steps=1"], "needs scale.rollout_workers >= 1"),
        (["scale.rollout_urls=['http://h:8000/v1']"], "rollout_urls needs"),
        (["scale.judge_workers=2"], "judge_workers score for rollout workers"),
        (["scale.trainer_workers=0"], "scale.trainer_workers"),
        (["scale.rollout_worker=2"], "did you mean 'rollout_workers'"),
        (
            ["scale.trainer_workers=2", "scale.trainer_strategy='fsdp2'"],
            "rank 0 samples, evaluates and writes checkpoints alone",
        ),
        (["scale.trainer_strategy='zero3'"], "'ddp' or 'fsdp2'"),
        (["scale.collective_timeout_s=0"], "scale.collective_timeout_s"),
    ],
)
def test_scale_config_refusals(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_scale_defaults_are_the_single_process_run():
    s = load_config(None, ["scale.rollout_workers=2", "scale.max_off_policy_steps=1"]).scale
    assert (s.rollout_workers, s.trainer_workers, s.max_off_policy_steps) == (2, 1, 1)
    assert s.distributed
    assert not load_config(None, []).scale.distributed


def test_single_process_run_never_imports_ray(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    run_dir = tmp_path / "run"
    summary = train(load_config(None, run_overrides(tiny_dir, run_dir, "train.steps=1")))
    scale = json.loads((run_dir / "summary.json").read_text())["scale"]
    assert scale == summary["scale"]
    assert scale == {
        "rollout_workers": 0,
        "trainer_workers": 1,
        "trainer_strategy": "ddp",
        "judge_workers": 0,
        "max_off_policy_steps": 0,
    }
