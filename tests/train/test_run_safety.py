"""Runs never lose their last steps, never resume from nothing, never train on a silent judge
outage, and refuse bad settings before any model loads."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_helpers import run_overrides
from typer.testing import CliRunner

from burnish.algorithms import LossConfig
from burnish.cli import app
from burnish.config import ConfigError, load_config
from burnish.judges.scripted import scripted_judge_server
from burnish.judges.scripted_rules import Fault, ScriptedRules
from burnish.train.checkpoint import list_checkpoints
from burnish.train.guards import RunHealthError, ScorableWatch, advisories, loss_advice
from burnish.train.loop import train

BIN = Path(sys.executable).parent


def test_last_steps_are_saved_and_the_adapter_exported(tiny_dir, tmp_path):
    run = tmp_path / "r"
    train(
        load_config(
            None, run_overrides(tiny_dir, run, "train.steps=3", "train.checkpoint_every=50")
        )
    )
    assert [p.name for p in list_checkpoints(run)] == ["step_3"]
    assert (run / "adapter" / "adapter_model.safetensors").exists()
    result = CliRunner().invoke(
        app,
        ["eval", "--model", str(tiny_dir), "--adapter", str(run / "adapter"), "--env", "reverse"]
        + ["--n", "2", "--samples", "1", "--json"],
    )
    assert result.exit_code == 0, result.output
    assert '"pass@1"' in result.output


def test_full_fine_tuning_exports_a_model_directory(tiny_dir, tmp_path):
    run = tmp_path / "r"
    train(load_config(None, run_overrides(tiny_dir, run, "train.steps=1", "lora.enabled=false")))
    assert (run / "model" / "config.json").exists()
    assert (run / "model" / "model.safetensors").exists()


def test_resume_refuses_a_directory_with_nothing_to_resume(tiny_dir, tmp_path):
    empty = tmp_path / "empty"
    with pytest.raises(ValueError, match="nothing to resume in .*empty"):
        train(load_config(None, run_overrides(tiny_dir, empty)), resume=True)
    assert not empty.exists()  # nothing was written
    run = tmp_path / "r"
    train(load_config(None, run_overrides(tiny_dir, run, "train.steps=1")))
    for p in list_checkpoints(run):
        (p / "COMPLETE").unlink()  # as if every checkpoint write had been cut short
    with pytest.raises(ValueError, match="no complete checkpoint to resume from"):
        train(load_config(None, run_overrides(tiny_dir, run)), resume=True)


def test_run_dir_that_is_a_file_is_refused(tiny_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        train(load_config(None, run_overrides(tiny_dir, f)))


@pytest.mark.parametrize(
    "override, message",
    [
        ('log.run_dir=""', "run_dir is empty"),
        ("rollout.temperature=inf", "rollout.temperature': Input should be a finite number"),
        ("train.grad_clip=inf", "finite number"),
        ("train.warmup_steps=500", r"warmup_steps \(500\) must be < steps \(100\)"),
        ("judges=[{name='j', weight=nan}]", "judges.0.weight': Input should be a finite"),
        ("train.stpes=3", "unknown field 'train.stpes'; did you mean 'steps'?"),
        ("env.name='arith\x00metic'", "not a printable, non-empty name"),
        ("env.kwargs={digits=3}", "'arithmetic' does not take 'digits'; it takes: low, high"),
        ("env.name=calculus", "unknown environment 'calculus'; available: arithmetic"),
    ],
)
def test_bad_settings_are_refused_at_load(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_field_lists_the_section_fields():
    with pytest.raises(ConfigError, match=r"fields here: prompts_per_step, group_size"):
        load_config(None, ["rollout.groupsize=4"])


def test_config_that_is_not_utf8_names_the_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('[log]\nrun_dir = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.toml is not UTF-8 text"):
        load_config(p)


def test_advisories_name_settings_that_never_bind():
    (msg,) = advisories(load_config(None, ["algorithm.eps_high=100"]))
    assert "eps_high = 100.0" in msg and "almost never binds" in msg
    assert advisories(load_config(None, ["algorithm.loss=cispo", "algorithm.eps_high=4"])) == []
    (low,) = advisories(load_config(None, ["algorithm.loss=grpo", "algorithm.eps_low=1.5"]))
    assert "lower clip never binds" in low


def test_dr_grpo_normaliser_far_from_lengths_is_flagged():
    loss = LossConfig(name="dr_grpo", max_completion_len=4096)
    (msg,) = loss_advice(loss, {"length/mean": 12.0})
    assert "max_completion_len = 4096" in msg and "341x smaller" in msg
    assert (
        loss_advice(LossConfig(name="dr_grpo", max_completion_len=16), {"length/mean": 12.0}) == []
    )
    assert loss_advice(LossConfig(name="dapo"), {"length/mean": 1.0}) == []


def test_scorable_watch_stops_after_the_limit():
    watch = ScorableWatch(limit=2)
    dead = {"episodes/count": 8.0, "reward/unscorable_frac": 1.0, "judge/failed_calls/j": 8.0}
    watch.observe(0, dead)
    watch.observe(1, {**dead, "reward/unscorable_frac": 0.5})  # something scored: reset
    watch.observe(2, dead)
    with pytest.raises(RunHealthError, match="no rollout could be scored in the last 2 steps"):
        watch.observe(3, dead)


def test_a_judge_that_always_fails_stops_the_run(tiny_dir, tmp_path):
    rules = ScriptedRules(faults=(Fault("malformed_json", probability=1.0),))
    with scripted_judge_server(rules) as server:
        judge = (
            f"judges=[{{name='j', rubric='keywords', base_url='{server.base_url}', cache=false}}]"
        )
        cfg = load_config(
            None,
            run_overrides(
                tiny_dir, tmp_path / "r", judge, "train.steps=10", "env_score.role='metric'"
            )
            + ["train.max_unscorable_steps=2", "monitors.enabled=false"],
        )
        with pytest.raises(RunHealthError, match="last 2 steps"):
            train(cfg)


def _train_process(tiny_dir, tmp_path, *extra):
    """`burnish train` of a long tiny run in its own process (stdout dropped, stderr kept)."""
    run, config = tmp_path / "r", tmp_path / "c.toml"
    config.write_text("")
    overrides = run_overrides(tiny_dir, run, "train.steps=100000", *extra)
    proc = subprocess.Popen(
        [str(BIN / "burnish"), "train", str(config), *(f"--set={o}" for o in overrides)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return proc, run


def _interrupt(proc) -> str:
    """SIGINT, then the process's stderr once it ended (it is killed if it does not)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=90)[1]
    finally:
        proc.kill()  # never left running when the interrupt is not honoured


def test_sigint_says_where_to_resume(tiny_dir, tmp_path):
    proc, run = _train_process(tiny_dir, tmp_path, "train.checkpoint_every=1")
    deadline = time.time() + 180  # generous: a loaded 2-core machine starts the CLI slowly
    while not list_checkpoints(run) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    err = _interrupt(proc)
    assert proc.returncode == 130, err
    assert "can resume from" in err and "--resume" in err


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_sigint_while_the_run_starts_up_stops_it(tiny_dir, tmp_path, delay):
    """An interrupt while torch and transformers import (which can swallow it) still stops the
    run, with exit code 130."""
    proc, _ = _train_process(tiny_dir, tmp_path)
    time.sleep(delay)
    err = _interrupt(proc)
    assert proc.returncode == 130, err


def test_module_attr_environment_resolves_from_the_current_directory(tmp_path):
    (tmp_path / "my_env.py").write_text(
        "from burnish.envs.builtin import ReverseEnv\n\ndef make():\n    return ReverseEnv()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(BIN / "burnish"), "envs", "validate", "my_env:make", "--n", "3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
