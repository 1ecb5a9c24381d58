"""End-to-end behaviour locks of the RL loop on a tiny random model.

`test_resume_reproduces_losses` is a behaviour lock: a resumed run must reproduce the losses of an
uninterrupted one exactly. Do not loosen it without an explicit decision.
"""

import json

import pytest
from train_helpers import run_overrides

from burnish.config import ConfigError, load_config
from burnish.store import RunStore
from burnish.train.checkpoint import list_checkpoints
from burnish.train.loop import train


def _losses(run_dir):
    store = RunStore.open(run_dir)
    out = [(s["step"], s.get("loss/total"), s["reward/mean"]) for s in store.steps()]
    store.close()
    return out


def _grad_norms(run_dir):
    store = RunStore.open(run_dir)
    out = [s.get("grad/norm") for s in store.steps()]
    store.close()
    return out


def test_train_writes_run_directory(tiny_dir, tmp_path):
    run = tmp_path / "run"
    summary = train(load_config(None, run_overrides(tiny_dir, run)))
    assert summary["steps"] == 4
    for k in ("before", "after"):
        assert set(summary[k]) == {"pass@1", "mean_reward"}
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    assert (run / "config.toml").exists()
    assert [p.name for p in list_checkpoints(run)] == ["step_2", "step_4"]
    assert (run / "checkpoints/step_4/adapter/adapter_model.safetensors").exists()
    store = RunStore.open(run)
    steps = store.steps()
    assert [s["step"] for s in steps] == [0, 1, 2, 3]
    assert all("reward/mean" in s and "length/mean" in s for s in steps)
    assert all(s["threads"] == 1.0 for s in steps)  # the governor's count (model.threads=1)
    # a step trains unless every advantage was zero
    assert all(("loss/total" in s) != (s.get("train/skipped") == 1.0) for s in steps)
    assert any("loss/total" in s for s in steps)
    rows = store.rollouts(step=0)
    assert len(rows) == 12 and {r["env"] for r in rows} == {"reverse"}
    assert all(r["num_sampled"] >= 1 for r in rows)
    assert [e["step"] for e in store.evals()] == [0, 4]


def test_resume_reproduces_losses(tiny_dir, tmp_path):
    full = tmp_path / "full"
    train(load_config(None, run_overrides(tiny_dir, full)))
    part = tmp_path / "part"
    train(load_config(None, run_overrides(tiny_dir, part, "train.steps=2")))
    # the run "crashes" after step 2; it resumes with the full step count
    train(load_config(None, run_overrides(tiny_dir, part)), resume=True)
    assert _losses(part) == _losses(full)


def test_bf16_base_trains_and_resumes_exactly(tiny_dir, tmp_path):
    """`lora.base_dtype`: the policy's frozen base in bf16 through the whole loop."""
    bf16 = "lora.base_dtype='bfloat16'"
    full = tmp_path / "full"
    train(load_config(None, run_overrides(tiny_dir, full, bf16)))
    part = tmp_path / "part"
    train(load_config(None, run_overrides(tiny_dir, part, "train.steps=2", bf16)))
    train(load_config(None, run_overrides(tiny_dir, part, bf16)), resume=True)
    losses = _losses(part)
    assert losses == _losses(full) and any(loss is not None for _, loss, _ in losses)
    fp32 = tmp_path / "fp32"
    train(load_config(None, run_overrides(tiny_dir, fp32, "train.steps=2")))
    grads = [_grad_norms(r)[1] for r in (fp32, full)]
    assert grads[0] != grads[1] and grads[0] == pytest.approx(grads[1], rel=0.05)  # bf16, close


def test_resume_drops_steps_logged_after_the_checkpoint(tiny_dir, tmp_path):
    run = tmp_path / "run"
    train(load_config(None, run_overrides(tiny_dir, run, "train.steps=3")))  # checkpoint at 2
    store = RunStore.open(run)
    assert store.last_step() == 2
    store.close()
    train(load_config(None, run_overrides(tiny_dir, run)), resume=True)
    full = tmp_path / "full"
    train(load_config(None, run_overrides(tiny_dir, full)))
    assert _losses(run) == _losses(full)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("env.name='no-such-env'", "no-such-env"),
        ("model.name='/nonexistent/model'", "/nonexistent/model"),
    ],
)
def test_bad_input_is_named(tiny_dir, tmp_path, override, needle):
    with pytest.raises(Exception) as e:
        train(load_config(None, run_overrides(tiny_dir, tmp_path / "r", override)))
    assert needle in str(e.value)


def test_group_size_one_is_refused(tiny_dir, tmp_path):
    with pytest.raises(ConfigError, match="rollout.group_size"):
        load_config(None, run_overrides(tiny_dir, tmp_path / "r", "rollout.group_size=1"))


class _Broken:
    """An environment whose every episode raises."""

    name = "broken"

    def __init__(self):
        from burnish.envs import load_env

        self.inner = load_env("reverse")
        self.max_turns = 1

    def tasks(self, split, seed):
        return self.inner.tasks(split, seed)

    async def reset(self, task):
        raise RuntimeError("backend unavailable")

    async def step(self, task, state, action):
        raise RuntimeError("backend unavailable")

    def score(self, task, trajectory):
        return self.inner.score(task, trajectory)

    def validate(self, task):
        pass


BROKEN = _Broken


def test_env_that_always_raises_stops_with_its_error(tiny_dir, tmp_path):
    cfg = load_config(None, run_overrides(tiny_dir, tmp_path / "r", "env.name='test_loop:BROKEN'"))
    with pytest.raises(RuntimeError, match="failed.*backend unavailable"):
        train(cfg)


class _Gullible(_Broken):
    """An environment whose scorer pays for anything (so canary probes catch it)."""

    name = "gullible"

    async def reset(self, task):
        return await self.inner.reset(task)

    async def step(self, task, state, action):
        return await self.inner.step(task, state, action)

    def score(self, task, trajectory):
        from burnish.types import Score

        return Score(1.0)


GULLIBLE = _Gullible


def test_alert_can_stop_the_run(tiny_dir, tmp_path, caplog):
    run = tmp_path / "r"
    opts = "monitors.options={probe_every=1, on_alert='stop'}"
    summary = train(
        load_config(None, run_overrides(tiny_dir, run, "env.name='test_loop:GULLIBLE'", opts))
    )
    assert summary["steps"] == 1  # stopped after the first step's probes
    assert summary["alerts"] and summary["alerts"][0]["rule"] == "canary_probe"
    assert "monitor alert at step 0: canary_probe" in caplog.text  # shown as it happens
    assert [p.name for p in list_checkpoints(run)] == ["step_1"]  # stopping checkpoints first
    store = RunStore.open(run)
    assert store.alerts()[0]["step"] == 0
    store.close()


def test_a_new_run_refuses_a_used_run_directory(tiny_dir, tmp_path):
    run = tmp_path / "r"
    train(load_config(None, run_overrides(tiny_dir, run, "train.steps=1")))
    written = (run / "config.toml").read_text()
    with pytest.raises(ValueError, match="already holds a run .* --resume"):
        train(load_config(None, run_overrides(tiny_dir, run, "train.steps=2")))
    assert (run / "config.toml").read_text() == written  # nothing of the first run is touched
