"""`burnish train` with `sampler.kind = "openai"` against a live `burnish serve` (docs/engines.md).

The served run and the local run use the same seed but different random streams (the server
seeds each request from the sampler's generator, the local sampler from torch's), so their
curves are compared with a stated tolerance, not for equality.
"""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from served import burnish_serve

from burnish.config import load_config
from burnish.store import RunStore
from burnish.train.demo import DEMO_CONFIG
from burnish.train.loop import train

STEPS, FIRST = 60, 30
TOLERANCE = 0.12
"""Largest allowed gap between the served and the local run: final test pass@1, and mean
reward over the last 20 steps (each is a mean over 100 x 4 or 20 x 64 samples)."""

COMMON = [
    f"train.steps={STEPS}",
    "train.checkpoint_every=10",
    "model.threads=1",
    "eval.every=0",
    "eval.n_tasks=100",
]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "burnish.cli", *args], capture_output=True, text=True, timeout=900
    )


def _late_reward(run_dir) -> float:
    store = RunStore.open(run_dir / "run.db")
    try:
        steps = store.steps()
    finally:
        store.close()
    late = [s["reward/mean"] for s in steps[-20:]]
    return sum(late) / len(late)


@pytest.mark.slow
def test_training_through_burnish_serve_learns_like_the_local_run(tmp_path):
    config = tmp_path / "demo.toml"
    config.write_text(DEMO_CONFIG)
    local_dir, served_dir = tmp_path / "local", tmp_path / "served"
    local = train(load_config(config, [*COMMON, f"log.run_dir={local_dir}"]))

    with burnish_serve(tmp_path / "serve.log") as url:
        served_args = [
            *COMMON,
            f"log.run_dir={served_dir}",
            "sampler.kind=openai",
            f"sampler.base_url={url}",
            "sampler.model=burnish-tiny",
        ]
        sets = [x for s in served_args for x in ("--set", s)]
        first = _cli("train", str(config), *sets, "--set", f"train.steps={FIRST}")
        assert first.returncode == 0, first.stderr[-3000:]
        resumed = _cli("train", str(config), *sets, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        served_models = httpx.get(url + "/models", timeout=10).json()["data"]

    summary = json.loads((served_dir / "summary.json").read_text())
    store = RunStore.open(served_dir / "run.db")
    try:
        steps = store.steps()
    finally:
        store.close()
    assert [s["step"] for s in steps] == list(range(STEPS))  # each step once across the resume
    assert max(s["mismatch/k3"] for s in steps if "mismatch/k3" in s) < 1e-6

    # learned, and like the local run
    assert summary["after"]["pass@1"] >= summary["before"]["pass@1"] + 0.2
    assert abs(summary["after"]["pass@1"] - local["after"]["pass@1"]) <= TOLERANCE
    assert abs(_late_reward(served_dir) - _late_reward(local_dir)) <= TOLERANCE

    # the server holds only the resumed session's last adapter of this run
    scope = json.loads((served_dir / "sampler.json").read_text())["scope"]
    ours = [m["id"] for m in served_models if m["id"].startswith(scope)]
    assert len(ours) == 1, ours
    assert len(list((served_dir / "served").iterdir())) == 1
    assert load_config(served_dir / "config.toml").sampler.kind == "openai"
