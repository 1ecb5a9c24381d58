import dataclasses
from dataclasses import dataclass

from burnish.store import RunStore
from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory


def _group(step_tag: str, rewards):
    task = Task(
        id=f"t-{step_tag}",
        prompt=(Message("user", "2+2="),),
        answer=4,
        env="arithmetic",
        info={"k": 1},
    )
    trajs, scores = [], []
    for r in rewards:
        text = str(4 if r else 5)
        trajs.append(
            Trajectory(
                task=task,
                segments=(Segment((1, 2), False), Segment((3,), True, (-0.5,))),
                messages=(*task.prompt, Message("assistant", text)),
                stop_reason=StopReason.DONE,
            )
        )
        scores.append(Score(r, {"correct": r or 0.0}))
    return Group(task=task, trajectories=tuple(trajs), scores=tuple(scores))


@dataclass
class _Alert:
    rule: str
    signal: str
    value: float
    threshold: float
    evidence: dict


def test_write_read_truncate(tmp_path):
    store = RunStore(tmp_path / "run.db")
    for step in range(3):
        store.log_step(
            step,
            {"reward/mean": step / 2},
            [
                dataclasses.replace(
                    _group(str(step), [1.0, 0.0, None]), advantages=(0.5, -0.5, None)
                )
            ],
            alerts=[_Alert("zscore", "length/mean", 3.0, 2.0, {"x": 1})],
        )
        store.log_eval(step, "arithmetic", {"pass@1": 0.1 * step})
    store.close()

    store = RunStore.open(tmp_path)
    assert [s["step"] for s in store.steps()] == [0, 1, 2]
    assert store.steps()[2]["reward/mean"] == 1.0
    rows = store.rollouts(step=1)
    assert len(rows) == 3
    assert rows[0]["completion"] == "4" and rows[0]["reward"] == 1.0 and rows[0]["advantage"] == 0.5
    assert rows[2]["reward"] is None and rows[2]["advantage"] is None
    assert rows[0]["components"] == {"correct": 1.0}
    assert rows[0]["task_info"] == {"k": 1}
    assert rows[0]["prompt"] == "user: 2+2="
    assert len(store.alerts()) == 3 and store.alerts()[0]["evidence"] == {"x": 1}

    store.truncate_after(0)
    assert [s["step"] for s in store.steps()] == [0]
    assert {r["step"] for r in store.rollouts()} == {0}
    assert len(store.alerts()) == 1
    assert [e["step"] for e in store.evals()] == [0]
    assert store.last_step() == 0


def test_open_missing_run(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="run directory not found"):
        RunStore.open(tmp_path / "nope")
