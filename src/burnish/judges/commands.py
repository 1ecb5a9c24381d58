"""What the `burnish judge ...` commands do: build a judge from options, run, print tables."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from burnish.judges.calibrate import CalibrationReport, calibrate, load_labels
from burnish.judges.config import JudgeConfig
from burnish.judges.replay import ReplayReport, replay
from burnish.judges.rubric import load_rubric
from burnish.judges.rubric_judge import RubricJudge
from burnish.judges.scripted import scripted_judge_server
from burnish.judges.scripted_rules import MODEL_ID, load_rules


@contextmanager
def judge_endpoint(
    *,
    scripted: Path | None,
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    timeout_s: float = 60.0,
) -> Iterator[JudgeConfig]:
    """A judge config: a scripted judge started in-process, or the given endpoint."""
    if scripted is not None:
        with scripted_judge_server(load_rules(scripted)) as server:
            yield JudgeConfig(server.base_url, MODEL_ID, api_key_env=None, timeout_s=timeout_s)
        return
    if not base_url or not model:
        raise ValueError("give --base-url and --model for a judge endpoint, or --scripted RULES")
    yield JudgeConfig(base_url, model, api_key_env=api_key_env, timeout_s=timeout_s)


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def print_calibration(report: CalibrationReport, console: Console) -> None:
    table = Table(title=f"Judge agreement with labels ({report.n_rows} rows)")
    for col in ("criterion", "n", "binary", "accuracy", "Cohen's kappa"):
        table.add_column(col)
    for c in report.criteria:
        table.add_row(
            c.name, str(c.n), "yes" if c.binary else "no", _fmt(c.accuracy), _fmt(c.kappa)
        )
    console.print(table)
    summary = Table(title="Judge calibration summary")
    summary.add_column("metric")
    summary.add_column("value")
    summary.add_row(f"Spearman(reward, label score), n={report.n_scored}", _fmt(report.spearman))
    summary.add_row(
        f"group judge position-flip rate, {report.flip_pairs} pairs", _fmt(report.flip_rate)
    )
    summary.add_row(
        f"canary false-positive rate (reward >= {report.canary_threshold}), n={report.canary_scored}",
        _fmt(report.canary_fpr),
    )
    summary.add_row("unscorable rate", _fmt(report.unscorable_rate))
    summary.add_row("judge calls", str(int(report.metrics["judge/calls"])))
    summary.add_row("judge tokens", str(int(report.metrics["judge/tokens"])))
    console.print(summary)


def run_calibrate(rubric_path: Path, labels_path: Path, config: JudgeConfig, *, as_json: bool,
                  seed: int = 0) -> CalibrationReport:  # fmt: skip
    rubric = load_rubric(rubric_path)
    rows = load_labels(labels_path, rubric)
    report = asyncio.run(calibrate(rubric, rows, config, seed=seed))
    if as_json:
        print(json.dumps(report.to_dict(), default=float))
    else:
        print_calibration(report, Console())
    return report


def print_replay(report: ReplayReport, console: Console, top: int) -> None:
    summary = Table(title="Replay: stored reward vs new judge")
    summary.add_column("metric")
    summary.add_column("value")
    for k, v in report.summary().items():
        summary.add_row(k, _fmt(v) if not float(v).is_integer() else str(int(v)))
    console.print(summary)
    movers = Table(title=f"Rollouts that move most (top {top})")
    for col in ("id", "step", "task", "old", "new", "delta", "completion"):
        movers.add_column(col)
    for r in report.top_movers(top):
        text = r.completion.replace("\n", " ")
        movers.add_row(str(r.id), str(r.step), r.task_id, _fmt(r.old), _fmt(r.new),
                       f"{r.delta:+.3f}", text[:60] + ("..." if len(text) > 60 else ""))  # fmt: skip
    console.print(movers)


def run_replay(run_dir: Path, rubric_path: Path, config: JudgeConfig, *, as_json: bool,
               top: int = 10) -> ReplayReport:  # fmt: skip
    from burnish.store import RunStore  # the store is optional for the rest of the judges

    rows = RunStore.open(run_dir).rollouts()
    judge = RubricJudge(load_rubric(rubric_path), config)
    report = asyncio.run(replay(rows, judge))
    if as_json:
        movers = [
            {"id": r.id, "old": r.old, "new": r.new, "delta": r.delta}
            for r in report.top_movers(top)
        ]
        print(
            json.dumps(
                {"summary": report.summary(), "top_movers": movers, "judge": judge.metrics()}
            )
        )
    else:
        print_replay(report, Console(), top)
    return report
