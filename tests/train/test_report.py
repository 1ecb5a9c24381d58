"""The run report and `burnish inspect`, read from the store of a short real run."""

import json
import re

import pytest
from report_helpers import alerting_run
from train_helpers import run_overrides
from typer.testing import CliRunner

from burnish.cli import app
from burnish.config import load_config
from burnish.report import write_report
from burnish.run_views import best_and_worst, distinct
from burnish.store import RunStore
from burnish.train.loop import train

runner = CliRunner()
SECTIONS = ("learning", "health", "monitors", "judges", "throughput", "rollouts")


@pytest.fixture(scope="module")
def run(tiny_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("report") / "run"
    alerting_run(tiny_dir, run_dir)
    return run_dir


def test_train_writes_a_self_contained_report(run):
    page = (run / "report.html").read_text()
    for sid in SECTIONS:
        assert f"<section id='{sid}'>" in page
    assert "forgetting" not in page.lower()  # no retention evals: no section
    assert not re.search(r"""(src|href)=['"](?!#)""", page)  # loads nothing: one shareable file
    assert page.count("<svg") >= 8
    assert "<text" in page  # axis labels are text
    store = RunStore.open(run)
    n_alerts = len(store.alerts())
    store.close()
    assert n_alerts > 0
    assert page.count('class="alert-marker"') >= n_alerts  # every alert drawn on a plot


def test_quiet_signals_fold_into_one_line(run):
    page = (run / "report.html").read_text()
    folded = re.search(r"<summary>(\d+) signals stayed at 0", page)
    assert folded and int(folded.group(1)) > 3
    # a folded signal has no plot of its own, and each plotted monitor says what it measures
    assert "monitor-stop-error" not in page
    assert "mean completion length in sampled tokens" in page


def test_forgetting_section_from_retention_evals(run, tmp_path):
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "run.db").write_bytes((run / "run.db").read_bytes())
    store = RunStore.open(copy)
    store.log_eval(0, "arithmetic", {"pass@1": 0.6})
    store.log_eval(6, "arithmetic", {"pass@1": 0.4})
    store.close()
    page = write_report(copy).read_text()
    assert "<section id='forgetting'>" in page
    assert "arithmetic" in page and "-0.200" in page


def test_forgetting_section_from_retention_rows_and_kl_to_base(run, tmp_path):
    """`eval.retention` measurements (the store's forgetting table) and the KL to base."""
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "run.db").write_bytes((run / "run.db").read_bytes())
    store = RunStore.open(copy)
    for step, p1, kl in ((0, 0.5, 0.0), (6, 0.375, 0.02)):
        store.log_forgetting(step, "retention/calculator", {"pass@1": p1})
        store.log_forgetting(step, "kl/base", {"forward": kl, "reverse": kl / 2})
    store.close()
    page = write_report(copy).read_text()
    assert "<section id='forgetting'>" in page
    assert "calculator" in page and "-0.125" in page
    assert "KL to the base policy" in page


def test_rollout_browser_shows_prompt_gold_and_components(run):
    page = (run / "report.html").read_text()
    assert "rollouts-best" in page and "rollouts-worst" in page and "rollouts-flagged" in page
    assert "gold answer" in page and "components:" in page and "prompt</div>" in page


def test_distinct_and_disjoint_best_worst():
    rows = [
        {"task_id": "a", "completion": "x", "reward": 1.0},
        {"task_id": "a", "completion": "x", "reward": 1.0},
        {"task_id": "a", "completion": "y", "reward": 0.0},
        {"task_id": "b", "completion": "x", "reward": 0.5},
    ]
    assert [r["copies"] for r in distinct(rows)] == [2, 1, 1]
    best, worst = best_and_worst(rows, 2)
    assert [r["reward"] for r in best] == [1.0, 0.5]
    assert [r["reward"] for r in worst] == [0.0]


def test_inspect_top_is_distinct_with_prompt_and_gold(run):
    res = runner.invoke(app, ["inspect", str(run), "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "best" in res.output and "worst" in res.output
    assert "prompt" in res.output and "gold answer" in res.output and "components" in res.output
    firsts = re.findall(r"task (\S+)  stop \S+.*\n\s+prompt.*\n\s+completion  (.*)", res.output)
    assert len(firsts) == len(set(firsts)) > 1  # no rollout shown twice


def test_inspect_flagged_lists_only_monitor_flags(run):
    store = RunStore.open(run)
    kept = store.flagged()
    store.close()
    flagged = [f for f in kept if f["flags"]["flags"]]
    top_only = [f for f in kept if not f["flags"]["flags"]]
    assert top_only  # the monitor keeps top-reward samples every step ...
    res = runner.invoke(app, ["inspect", str(run), "--flagged"])
    assert res.exit_code == 0, res.output
    assert f"{len(flagged)} rollouts a monitor flagged" in res.output  # ... which are not flags
    for f in flagged:
        assert any(f"{k} = " in res.output for k in f["flags"]["flags"])
    res = runner.invoke(app, ["inspect", str(run), "--top-reward"])
    assert res.exit_code == 0 and "(not a warning)" in res.output
    res = runner.invoke(app, ["inspect", str(run), "--top-reward", "--flagged"])
    assert res.exit_code == 2 and "choose one" in res.output


def test_report_is_regenerated_after_resume(tiny_dir, tmp_path):
    run_dir = tmp_path / "r"
    overrides = run_overrides(tiny_dir, run_dir, "train.steps=2", "train.checkpoint_every=2")
    train(load_config(None, overrides))
    (run_dir / "report.html").unlink()
    more = load_config(None, [*overrides, "train.steps=4"])
    train(more, resume=True)
    page = (run_dir / "report.html").read_text()
    assert "4 steps" in page
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4
