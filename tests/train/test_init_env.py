"""`burnish init env NAME` in a fresh directory: the package validates, its tests pass, it trains."""

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from burnish.cli import app
from burnish.config import load_config
from burnish.envs.scaffold import names_for
from burnish.train.loop import train

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_init_validate_test_train(tmp_path, monkeypatch):
    res = runner.invoke(app, ["init", "env", "sum-three", "--dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    root = tmp_path / "sum-three"
    for rel in ("sum_three/env.py", "tests/test_env.py", "pyproject.toml", "train.toml"):
        assert (root / rel).is_file(), rel
    assert '[project.entry-points."burnish.environments"]' in (root / "pyproject.toml").read_text()
    assert 'sum-three = "sum_three.env:SumThreeEnv"' in (root / "pyproject.toml").read_text()

    monkeypatch.chdir(root)  # module:attr names resolve from the current directory
    res = runner.invoke(app, ["envs", "validate", "sum_three.env:SumThreeEnv", "--n", "50"])
    assert res.exit_code == 0, res.output
    assert "ok" in res.output

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=root, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": f"{SRC}:{root}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout + tests.stderr

    cfg = load_config(
        root / "train.toml",
        ["train.steps=2", "eval.every=0", "eval.n_tasks=8", "model.threads=1",
         "rollout.prompts_per_step=2", "rollout.group_size=4", "train.checkpoint_every=2"],
    )  # fmt: skip
    summary = train(cfg)
    assert summary["steps"] == 2
    assert (root / "runs" / "sum-three" / "report.html").is_file()


def test_init_refuses_bad_names_and_existing_dirs(tmp_path):
    res = runner.invoke(app, ["init", "env", "Bad_Name", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "lowercase letters and digits" in res.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("")
    res = runner.invoke(app, ["init", "env", "taken", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "not empty" in res.output
    assert names_for("letter-count") == ("letter_count", "LetterCountEnv")
