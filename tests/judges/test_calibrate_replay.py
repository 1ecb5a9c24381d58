"""Calibration statistics (hand-computed), replay core, and the CLI on the shipped examples."""

import asyncio
import json
import math
from pathlib import Path

import pytest
from judge_helpers import keyword_task, make_config
from typer.testing import CliRunner

from burnish.cli import app
from burnish.judges.calibrate import LabelRow, calibrate, cohen_kappa, pair_flips, spearman
from burnish.judges.replay import centred, replay
from burnish.judges.rubric import builtin_rubric
from burnish.types import Score

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "judges"


def test_cohen_kappa_hand_computed():
    a = ["y", "y", "n", "n", "y"]
    b = ["y", "n", "n", "n", "y"]
    # p_o = 4/5; p_e = (3/5)(2/5) + (2/5)(3/5) = 0.48; kappa = (0.8 - 0.48) / 0.52
    assert cohen_kappa(a, b) == pytest.approx(0.32 / 0.52)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert math.isnan(cohen_kappa(["y", "y"], ["y", "y"]))


def test_spearman_hand_computed():
    # d = [0, 1, 1, 0] -> rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties: ranks x = [1, 2.5, 2.5, 4]; cov = 4.5, var_x = 4.5, var_y = 5 -> 4.5 / sqrt(22.5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(spearman([1, 1], [1, 2]))


def test_pair_flips():
    # pairs (0,1) (0,2) (1,2): orders > > > vs > < < -> 2 flips; a tie that opens up also counts
    assert pair_flips([0.9, 0.5, 0.1], [0.9, 0.1, 0.5]) == (1, 3)
    assert pair_flips([0.5, 0.5], [0.6, 0.5]) == (1, 1)


def test_calibrate_small_case_matches_hand_counts(server):
    rubric = builtin_rubric("keywords")
    task_info = {"keywords": ["apple", "river", "lamp"]}
    prompt = "Write two sentences using: apple, river, lamp."
    rows = [  # scripted keyword judge: coverage 1 -> all, 2/3 -> some, 0 -> none
        LabelRow(
            "a",
            prompt,
            "An apple, a river, a lamp.",
            task_info,
            score=1.0,
            labels={"concise": "yes"},
        ),
        LabelRow(
            "b", prompt, "An apple by the river.", task_info, score=0.6, labels={"concise": "no"}
        ),
        LabelRow("c", prompt, "Nothing.", task_info, score=0.0, labels={"concise": "no"}),
    ]
    report = asyncio.run(calibrate(rubric, rows, make_config(server), canary_tasks=1))
    (concise,) = [c for c in report.criteria if c.name == "concise"]
    # judge "concise" verdicts: round(q) of q = 1, 2/3, 0 -> yes, yes, no; labels yes, no, no
    # p_o = 2/3; p_e = (1/3)(2/3) + (2/3)(1/3) = 4/9; kappa = (2/3 - 4/9) / (5/9) = 0.4
    assert concise.accuracy == pytest.approx(2 / 3) and concise.binary
    assert concise.kappa == pytest.approx(0.4)
    assert report.spearman == pytest.approx(1.0)
    assert report.flip_rate == 0.0 and report.flip_pairs == 3
    assert report.canary_scored == 5 and report.canary_fpr == 0.0


def test_replay_core_on_hand_made_rows():
    rows = [
        {
            "id": 1,
            "step": 0,
            "task_id": "t",
            "group": 0,
            "prompt": "p",
            "completion": "x",
            "reward": 0.9,
            "task_info": {},
        },
        {
            "id": 2,
            "step": 0,
            "task_id": "t",
            "group": 0,
            "prompt": "p",
            "completion": "y",
            "reward": 0.1,
            "task_info": {},
        },
        {
            "id": 3,
            "step": 1,
            "task_id": "u",
            "group": 0,
            "prompt": "q",
            "completion": "z",
            "reward": None,
            "task_info": {},
        },
    ]
    new = {"x": 0.2, "y": 0.8, "z": 0.5}
    seen = []

    class Judge:
        name = "fake"

        async def score_candidates(self, task, candidates):
            seen.append((task.id, list(candidates)))
            return [Score(new[c]) for c in candidates]

    report = asyncio.run(replay(rows, Judge()))
    assert seen == [("t", ["x", "y"]), ("u", ["z"])]
    s = report.summary()
    assert s["groups"] == 2 and s["compared"] == 2 and s["changed"] == 2
    assert s["mean_abs_delta"] == pytest.approx(0.7)
    assert s["advantage_sign_flips"] == 2  # x and y swap places within their group
    movers = report.top_movers(5)
    assert [r.id for r in movers][:2] in ([1, 2], [2, 1]) and len(movers) == 2
    assert sorted(r.delta for r in movers) == pytest.approx([-0.7, 0.7])
    assert centred([1.0, None, 3.0]) == [-1.0, None, 1.0]


def test_cli_calibrate_prints_table_and_json_on_examples():
    runner = CliRunner()
    args = ["judge", "calibrate", str(EXAMPLES / "keywords.toml"), str(EXAMPLES / "labels.jsonl"),
            "--scripted", str(EXAMPLES / "rules_keywords.toml")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Cohen's kappa" in result.output and "canary false-positive rate" in result.output
    result = runner.invoke(
        app, [*args[:4], "--scripted", str(EXAMPLES / "rules_injection_gullible.toml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_rows"] == 30 and report["canary_fpr"] > 0  # the gullible judge is caught


def test_cli_replay_prints_movers(tmp_path):
    from burnish.store import RunStore
    from burnish.types import Group, Message, StopReason, Trajectory

    task = keyword_task()
    texts = ["An apple by the river, under a lamp.", "A very long answer " * 20, ""]
    trajs = tuple(
        Trajectory(task, (), (*task.prompt, Message("assistant", t)), StopReason.DONE)
        for t in texts
    )
    store = RunStore(tmp_path / "run" / "run.db")
    store.log_step(0, {}, [Group(task, trajs, (Score(0.2), Score(0.9), Score(0.0)))])
    store.close()
    result = CliRunner().invoke(app, ["judge", "replay", str(tmp_path / "run"), "--rubric",
                                      str(EXAMPLES / "keywords.toml"), "--scripted",
                                      str(EXAMPLES / "rules_keywords.toml")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Rollouts that move most" in result.output and "advantage_sign_flips" in result.output
