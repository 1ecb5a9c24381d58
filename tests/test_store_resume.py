"""Resuming from checkpoint `step_N` re-runs step N: the store drops every row of steps >= N
first, so no table gains duplicates, and a step logged twice is refused instead of doubled."""

from __future__ import annotations

import sqlite3
from collections import Counter

import pytest

from burnish.monitors.records import Alert, FlaggedSample
from burnish.store import RunStore
from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory


def _group(step: int, g: int) -> Group:
    task = Task(f"t{step}-{g}", (Message("user", "2+2="),), answer=4, env="arithmetic")
    trajs, scores = [], []
    for s in range(3):
        trajs.append(
            Trajectory(
                task=task,
                segments=(Segment((1, 2), False), Segment((3,), True, (-0.5,))),
                messages=(*task.prompt, Message("assistant", str(s))),
                stop_reason=StopReason.DONE,
            )
        )
        scores.append(Score(float(s == 1)))
    return Group(task=task, trajectories=tuple(trajs), scores=tuple(scores))


def _log(store: RunStore, step: int, tag: str = "first") -> None:
    groups = [_group(step, g) for g in range(2)]
    alerts = [Alert("zscore", step, "length/mean", 3.0, 2.0, f"{tag} run")]
    flagged = [
        FlaggedSample(step, g, 1, f"t{step}-{g}", 1.0, {"injection": 1.0}, ("flagged",), "1")
        for g in range(2)
    ]
    store.log_step(step, {"reward/mean": 0.5, "tag": tag}, groups, alerts, flagged)


def _eval_steps(store: RunStore) -> list[int]:
    return sorted({e["step"] for e in store.evals()})


def _log_run(store: RunStore, steps: range) -> None:
    """Steps as the loop logs them; an eval labelled s is taken after s steps (every 2 here)."""
    for step in steps:
        _log(store, step)
        if (step + 1) % 2 == 0:
            store.log_eval(step + 1, "arithmetic", {"pass@1": 0.1 * step})


def _keys(store: RunStore) -> dict[str, Counter]:
    return {
        "steps": Counter(s["step"] for s in store.steps()),
        "rollouts": Counter((r["step"], r["group"], r["sample"]) for r in store.rollouts()),
        "flagged": Counter((f["step"], f["group"], f["sample"]) for f in store.flagged()),
        "alerts": Counter((a["step"], a["rule"], a["signal"]) for a in store.alerts()),
        "evals": Counter((e["step"], e["env"]) for e in store.evals()),
    }


def test_truncate_from_then_relog_leaves_no_duplicates(tmp_path):
    store = RunStore(tmp_path / "run.db")
    store.log_eval(0, "arithmetic", {"pass@1": 0.0})  # "before", taken after 0 steps
    _log_run(store, range(5))
    assert _eval_steps(store) == [0, 2, 4]
    # checkpoint step_3 holds 3 completed steps: steps 3 and 4 are run again
    store.truncate_from(3)
    assert sorted(_keys(store)["steps"]) == [0, 1, 2]
    assert {r["step"] for r in store.rollouts()} == {0, 1, 2}
    assert {a["step"] for a in store.alerts()} == {0, 1, 2}
    assert {f["step"] for f in store.flagged()} == {0, 1, 2}
    assert _eval_steps(store) == [0, 2]  # the eval after 4 steps came from steps being re-run
    for step in (3, 4):
        _log(store, step, tag="resumed")
    store.log_eval(4, "arithmetic", {"pass@1": 0.3})
    for table, counts in _keys(store).items():
        dups = {k: n for k, n in counts.items() if n > 1}
        assert not dups, f"{table} has duplicate keys {dups}"
    assert len(store.rollouts()) == 5 * 2 * 3
    assert [s["tag"] for s in store.steps()] == ["first"] * 3 + ["resumed"] * 2
    assert [a["evidence"] for a in store.alerts()][-2:] == ["resumed run", "resumed run"]
    assert _eval_steps(store) == [0, 2, 4]
    store.close()


def test_truncate_from_zero_clears_every_step(tmp_path):
    store = RunStore(tmp_path / "run.db")
    store.log_eval(0, "arithmetic", {"pass@1": 0.0})
    _log_run(store, range(2))
    store.truncate_from(0)
    assert store.steps() == [] and store.rollouts() == [] and store.alerts() == []
    assert store.flagged() == [] and store.last_step() is None
    assert _eval_steps(store) == [0]


def test_a_step_logged_twice_is_refused_not_doubled(tmp_path):
    store = RunStore(tmp_path / "run.db")
    _log_run(store, range(4))
    store.truncate_after(2)  # keeps step 2: logging it again would double its rows
    with pytest.raises(ValueError, match=r"step 2 is already in the run store.*truncate_from\(2\)"):
        _log(store, 2, tag="again")
    assert Counter(r["step"] for r in store.rollouts())[2] == 6
    assert [s["tag"] for s in store.steps()] == ["first"] * 3
    store.close()


def test_the_schema_itself_refuses_duplicate_rollouts(tmp_path):
    store = RunStore(tmp_path / "run.db")
    _log(store, 0)
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(
            "INSERT INTO rollouts (step, grp, sample) VALUES (0, 0, 0)"
        )  # a writer that bypasses log_step
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO flagged (step, grp, sample) VALUES (0, 1, 1)")
    store.close()


def test_a_store_that_already_holds_duplicates_still_opens(tmp_path):
    path = tmp_path / "run.db"
    store = RunStore(path)
    _log(store, 0)
    store.conn.execute("DROP INDEX rollouts_unique")
    store.conn.execute(
        "INSERT INTO rollouts (step, grp, sample) VALUES (0, 0, 0)"
    )  # as an older burnish left it after a resume
    store.conn.commit()
    store.close()
    store = RunStore.open(path)
    assert len(store.rollouts()) == 7
    store.truncate_from(0)
    store.close()
    store = RunStore.open(path)  # clean again: the constraint is back
    _log(store, 0)
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO rollouts (step, grp, sample) VALUES (0, 0, 0)")
    store.close()


def test_truncate_from_clears_forgetting_rows_past_the_checkpoint(tmp_path):
    store = RunStore(tmp_path / "run.db")
    for step in (0, 2, 4):  # forgetting is measured at eval points, labelled like evals
        store.log_forgetting(step, "retention/arithmetic", {"pass@1": 0.5 - 0.1 * step})
        store.log_forgetting(step, "kl/base", {"forward": 0.01 * step})
    store.truncate_from(3)  # resuming from step_3 re-runs steps 3 and 4
    assert [(r["step"], r["name"]) for r in store.forgetting()] == [
        (0, "kl/base"), (0, "retention/arithmetic"), (2, "kl/base"), (2, "retention/arithmetic"),
    ]  # fmt: skip
    store.truncate_from(2)  # the measurement taken with step_2's weights stays
    assert {r["step"] for r in store.forgetting()} == {0, 2}
    store.log_forgetting(4, "kl/base", {"forward": 0.9})  # the re-run measures again: no doubles
    assert Counter((r["step"], r["name"]) for r in store.forgetting())[(4, "kl/base")] == 1
    store.truncate_from(0)
    assert {r["step"] for r in store.forgetting()} == {0}
    store.close()
