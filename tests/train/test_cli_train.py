from train_helpers import run_overrides
from typer.testing import CliRunner

from burnish.cli import app
from burnish.config import load_config, save_config

runner = CliRunner()


def test_train_report_inspect(tiny_dir, tmp_path):
    run = tmp_path / "run"
    cfg = tmp_path / "c.toml"
    save_config(load_config(None, run_overrides(tiny_dir, run)), cfg)
    res = runner.invoke(app, ["train", str(cfg), "--set", "train.steps=3"])
    assert res.exit_code == 0, res.output
    assert "before" in res.output and "after" in res.output and "pass@1" in res.output

    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    html = (run / "report.html").read_text()
    assert "plots/reward.png" in html and (run / "plots" / "reward.png").stat().st_size > 1000
    assert (run / "plots" / "test_pass1.png").exists()

    res = runner.invoke(app, ["inspect", str(run), "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "best 2 of" in res.output and "worst 2 of" in res.output

    res = runner.invoke(app, ["inspect", str(run), "--flagged"])
    assert res.exit_code == 0, res.output
    assert "flagged samples" in res.output


def test_cli_errors_are_clear(tmp_path):
    res = runner.invoke(app, ["train", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2
    assert "config file not found" in res.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[rollout]\ngroup_size = 1\n")
    res = runner.invoke(app, ["train", str(bad)])
    assert res.exit_code == 2 and "rollout.group_size" in res.output
    res = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "run directory not found" in res.output
