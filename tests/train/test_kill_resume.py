"""Behaviour lock: a run killed with SIGKILL resumes without losing completed steps, and the
resumed run's losses equal an uninterrupted run's. Do not loosen without an explicit decision."""

import os
import signal
import subprocess
import sys
import time

import pytest
from train_helpers import run_overrides

from burnish.config import load_config, save_config
from burnish.store import RunStore
from burnish.train.loop import train


def _steps(run_dir):
    store = RunStore.open(run_dir)
    try:
        return [(s["step"], s.get("loss/total"), s["reward/mean"]) for s in store.steps()]
    finally:
        store.close()


def _assert_no_duplicates(run_dir) -> None:
    """Every (step, group, sample) once in rollouts and flagged; every alert once per step."""
    store = RunStore.open(run_dir)
    try:
        q = {
            "rollouts": "SELECT step, grp, sample, COUNT(*) n FROM rollouts GROUP BY 1, 2, 3",
            "flagged": "SELECT step, grp, sample, COUNT(*) n FROM flagged GROUP BY 1, 2, 3",
            "alerts": "SELECT step, rule, signal, COUNT(*) n FROM alerts GROUP BY 1, 2, 3",
            "evals": "SELECT step, env, COUNT(*) n FROM evals GROUP BY 1, 2",
        }
        for table, sql in q.items():
            dup = [tuple(r) for r in store.conn.execute(sql) if r["n"] > 1]
            assert not dup, f"{table} holds duplicate keys after resume: {dup[:5]}"
        steps = [r[0] for r in store.conn.execute("SELECT step FROM rollouts")]
        assert sorted(set(steps)) == list(range(12))
    finally:
        store.close()


@pytest.mark.slow
def test_sigkill_then_resume(tiny_dir, tmp_path):
    extra = ("train.steps=12", "train.checkpoint_every=1")
    run = tmp_path / "killed"
    cfg_path = tmp_path / "run.toml"
    save_config(load_config(None, run_overrides(tiny_dir, run, *extra)), cfg_path)
    cmd = [sys.executable, "-m", "burnish.cli", "train", str(cfg_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    killed_after = None
    while time.time() < deadline and proc.poll() is None:
        if (run / "run.db").exists():
            done = _steps(run)
            if len(done) >= 4:
                proc.send_signal(signal.SIGKILL)
                killed_after = len(done)
                break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_after is not None, "the run finished or stalled before it could be killed"
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "summary.json").exists()

    resumed = subprocess.run(
        [*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _steps(run)
    assert [s for s, _, _ in after] == list(range(12))
    _assert_no_duplicates(run)
    assert (run / "checkpoints" / "step_12").is_dir()  # the last step is saved
    assert (run / "adapter" / "adapter_model.safetensors").exists()

    full = tmp_path / "full"
    train(load_config(None, run_overrides(tiny_dir, full, *extra)))
    assert after == _steps(full)
