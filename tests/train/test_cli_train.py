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

    assert "report:" in res.output and "(step 3)" in res.output  # the table names its evals
    (run / "report.html").unlink()
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    html = (run / "report.html").read_text()
    assert 'aria-label="reward"' in html and 'aria-label="test-pass1"' in html

    res = runner.invoke(app, ["inspect", str(run), "--top", "2"])
    assert res.exit_code == 0, res.output
    assert "best 2 of" in res.output and "worst 2 of" in res.output

    res = runner.invoke(app, ["inspect", str(run), "--flagged"])
    assert res.exit_code == 0, res.output
    assert "flagged samples" in res.output


def test_help_reads_like_a_standard_cli():
    for cmd in (["train"], ["demo"], ["inspect"], ["judge", "scripted"], ["init", "env"]):
        res = runner.invoke(app, [*cmd, "--help"])
        assert res.exit_code == 0, res.output
        assert "<bool>" not in res.output and "<list" not in res.output, res.output
    out = runner.invoke(app, ["train", "--help"]).output
    assert "--resume " in out and "--set FIELD=VALUE" in out
    out = runner.invoke(app, ["judge", "scripted", "--help"]).output
    assert "Port to listen on" in out and "Address to bind" in out
    out = runner.invoke(app, ["demo", "--help"]).output
    assert "runs/demo," in " ".join(out.split())


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
