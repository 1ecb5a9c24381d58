"""The progress display: named phases, a time estimate, and a table that says which evals it compares."""

from io import StringIO

from rich.console import Console
from train_helpers import run_overrides

from burnish.config import load_config
from burnish.train import progress


def test_progress_names_phases_and_the_eval_it_shows(tiny_dir, tmp_path, monkeypatch):
    phases = []
    real_update = progress.Progress.update

    def update(self, task_id, **kw):
        if "phase" in kw:
            phases.append(kw["phase"])
        return real_update(self, task_id, **kw)

    monkeypatch.setattr(progress.Progress, "update", update)
    real_add = progress.Progress.add_task

    def add_task(self, *a, **kw):
        phases.append(kw["phase"])
        return real_add(self, *a, **kw)

    monkeypatch.setattr(progress.Progress, "add_task", add_task)
    out = StringIO()
    cfg = load_config(None, run_overrides(tiny_dir, tmp_path / "r", "eval.every=2"))
    summary = progress.train_with_progress(cfg, console=Console(file=out, width=200))
    text = out.getvalue()
    assert phases[0] == "baseline eval" and "training" in phases
    assert phases[-2:] == ["final eval", "done"]
    assert "eta" in text and "test pass@1" in text and "(step 2)" in text
    assert "after (step 4)" in text and "evaluation at step 2" in text
    assert summary["steps"] == 4
