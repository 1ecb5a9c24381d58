"""Checkpoints hold no pickled objects: a planted pickle is refused, and save -> load restores
the optimizer, scheduler, RNG streams, data cursor, monitor state and extra data exactly."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from burnish.train.checkpoint import (
    CheckpointError,
    TrainerState,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    policy = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (step + 1))
    return policy, opt, sched


def _train_one_step(policy, opt, sched) -> None:
    loss = policy(torch.randn(5, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    sched.step()


MONITOR = {
    "version": 1,
    "history": {"reward/mean": [[0, 0.5], [1, 0.25]]},
    "baselines": {"length/mean": [3.0, 4.5]},
    "detectors": {"zscore:reward/mean": {"kind": "zscore", "n": 2, "mean": 0.375, "m2": 0.03}},
    "last_alert": {"zscore": 1},
    "observed": 2,
}
EXTRA = {"before": {"arithmetic": {"pass@1": 0.25, "mean_reward": -0.5, "nan": math.nan}}}


def _draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(())), random.gauss(0, 1))


def _state(policy, opt, sched, step=3) -> TrainerState:
    random.gauss(0, 1)  # leaves a cached gaussian in the python state
    np.random.randn()  # and one in numpy's
    return TrainerState(
        step, opt.state_dict(), sched.state_dict(), rng_state(), {"arithmetic": 17, "reverse": 4},
        MONITOR, EXTRA,
    )  # fmt: skip


def test_save_load_round_trips_everything(tmp_path):
    policy, opt, sched = _setup()
    for _ in range(2):
        _train_one_step(policy, opt, sched)
    state = _state(policy, opt, sched)
    path = save_checkpoint(tmp_path, policy, state)
    expected_draws = _draws()  # what the run would draw next
    expected_weights = {k: v.clone() for k, v in policy.state_dict().items()}

    fresh, opt2, sched2 = _setup(seed=1)
    loaded = load_checkpoint(path, fresh)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in expected_weights.items())
    assert loaded.step == 3
    assert loaded.cursor == {"arithmetic": 17, "reverse": 4}
    assert loaded.monitor == MONITOR
    assert loaded.extra["before"]["arithmetic"]["pass@1"] == 0.25
    assert math.isnan(loaded.extra["before"]["arithmetic"]["nan"])
    opt2.load_state_dict(loaded.optimizer)
    sched2.load_state_dict(loaded.scheduler)
    assert sched2.state_dict() == sched.state_dict()
    for a, b in zip(opt.state_dict()["state"].values(), opt2.state_dict()["state"].values()):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]

    random.seed(99)  # scramble every stream
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(loaded.rng)
    assert _draws() == expected_draws
    # training on from the loaded state matches training on from the original
    _train_one_step(policy, opt, sched)
    set_rng_state(loaded.rng)
    _draws()
    _train_one_step(fresh, opt2, sched2)
    assert all(torch.equal(policy.state_dict()[k], v) for k, v in fresh.state_dict().items())


def test_trainer_state_files_need_no_pickle(tmp_path):
    policy, opt, sched = _setup()
    _train_one_step(policy, opt, sched)
    path = save_checkpoint(tmp_path, policy, _state(policy, opt, sched))
    torch.load(path / "trainer.pt", weights_only=True)  # tensors and plain containers only
    import json

    data = json.loads((path / "trainer.json").read_text())
    assert data["step"] == 3 and data["cursor"] == {"arithmetic": 17, "reverse": 4}


class _Planted:
    """Unpickling this writes a file: what a tampered checkpoint would do."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path):
    policy, opt, sched = _setup()
    path = save_checkpoint(tmp_path, policy, _state(policy, opt, sched))
    marker = tmp_path / "pwned"
    torch.save({"step": 3, "optimizer": _Planted(marker)}, path / "trainer.pt")
    with pytest.raises(CheckpointError, match="trainer.pt") as e:
        load_checkpoint(path, _setup()[0])
    assert "not loaded" in str(e.value)
    assert not marker.exists()


def test_a_checkpoint_without_the_trainer_state_is_named(tmp_path):
    policy, opt, sched = _setup()
    path = save_checkpoint(tmp_path, policy, _state(policy, opt, sched))
    (path / "trainer.json").unlink()
    with pytest.raises(CheckpointError, match="trainer.json"):
        load_checkpoint(path, _setup()[0])


def test_state_that_is_not_plain_data_is_refused_at_save(tmp_path):
    policy, opt, sched = _setup()
    state = _state(policy, opt, sched)
    state.extra = {"before": object()}
    with pytest.raises(CheckpointError, match=r"extra\.before.*object"):
        save_checkpoint(tmp_path, policy, state)
    assert not (tmp_path / "checkpoints" / "step_3").exists()
