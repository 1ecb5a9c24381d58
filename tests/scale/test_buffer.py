"""The staleness rule, the buffer's whole-slice bookkeeping and the pending list a checkpoint
keeps (no Ray)."""

import pytest

from burnish.envs import load_env
from burnish.scale.buffer import (
    Slice,
    StalenessBuffer,
    slices_from_state,
    split_positions,
    stale,
)
from burnish.train.groups import TaskCursor
from burnish.types import Group, Score, Segment, StopReason, Trajectory


def _group(task, version, n=2):
    traj = Trajectory(task, (Segment((1, 2), True, (-0.1, -0.2)),), task.prompt, StopReason.DONE)
    return Group(task, (traj,) * n, (Score(1.0),) * n, policy_version=version)


def _slice(step, round_, first, tasks):
    return Slice(step, round_, first, tuple(range(first, first + len(tasks))), tuple(tasks))


def test_staleness_rule():
    # step 5 trains version 5's update; a group of version 4 is one step behind
    assert not stale(5, 5, 0)
    assert stale(5, 4, 0)
    assert not stale(5, 4, 1)
    assert stale(5, 3, 1)
    assert not stale(5, 3, 2)
    assert stale(5, None, 2)  # an untagged group is never trusted


def test_buffer_takes_whole_fresh_slices_in_order():
    tasks = TaskCursor(load_env("arithmetic"), seed=0).take(4)
    buf = StalenessBuffer(max_off_policy_steps=1)
    a, b = _slice(3, 0, 0, tasks[:2]), _slice(3, 0, 2, tasks[2:])
    buf.add_pending(a)
    buf.add_pending(b)
    assert buf.put(b, [_group(t, 2) for t in tasks[2:]])
    assert not buf.ready(3, 0)  # slice a is still out
    assert not buf.put(a, [_group(t, 1) for t in tasks[:2]])  # version 1 is 2 steps behind 3
    assert buf.dropped == 2 and not buf.ready(3, 0)
    assert buf.put(a, [_group(t, 3) for t in tasks[:2]])
    assert buf.ready(3, 0)
    assert [g.task.id for g in buf.take(3, 0)] == [t.id for t in tasks]
    assert buf.pending == {} and buf.done == {}


def test_buffer_refuses_a_partial_slice():
    tasks = TaskCursor(load_env("arithmetic"), seed=0).take(3)
    buf = StalenessBuffer(0)
    s = _slice(0, 0, 0, tasks)
    buf.add_pending(s)
    with pytest.raises(RuntimeError, match="3 tasks came back with 2 groups"):
        buf.put(s, [_group(t, 0) for t in tasks[:2]])
    with pytest.raises(RuntimeError, match="group of task"):
        buf.put(s, [_group(t, 0) for t in reversed(tasks)])


def test_pending_slices_round_trip_through_a_checkpoint():
    env = load_env("arithmetic")
    cursor = TaskCursor(env, seed=3)
    cursor.take(5)
    later = cursor.take(4)  # indices 5..8
    buf = StalenessBuffer(1)
    buf.add_pending(Slice(7, 0, 2, (7, 8), tuple(later[2:])))
    buf.add_pending(Slice(7, 0, 0, (5, 6), tuple(later[:2])))
    state = buf.state()
    assert state == [[7, 0, 0, [5, 6]], [7, 0, 2, [7, 8]]]
    rebuilt = slices_from_state(state, TaskCursor(env, seed=3, drawn=9))
    assert [t.id for s in rebuilt for t in s.tasks] == [t.id for t in later]
    assert [s.key for s in rebuilt] == [(7, 0, 0), (7, 0, 2)]


def test_split_positions():
    assert split_positions(5, 2) == [(0, 3), (3, 2)]
    assert split_positions(1, 3) == [(0, 1)]
    assert split_positions(6, 3) == [(0, 2), (2, 2), (4, 2)]
