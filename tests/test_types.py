import pytest

from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory


def _traj():
    task = Task(id="t0", prompt=(Message("user", "1+1="),), answer=2, env="arithmetic")
    segs = (
        Segment(tokens=(5, 6, 7), sampled=False),
        Segment(tokens=(8, 9), sampled=True, logprobs=(-0.5, -0.25)),
        Segment(tokens=(3,), sampled=False),
    )
    msgs = (*task.prompt, Message("assistant", "2"))
    return Trajectory(task=task, segments=segs, messages=msgs, stop_reason=StopReason.DONE)


def test_trajectory_flattens_segments():
    t = _traj()
    assert t.tokens == [5, 6, 7, 8, 9, 3]
    assert t.mask == [0, 0, 0, 1, 1, 0]
    assert t.logprobs == [0.0, 0.0, 0.0, -0.5, -0.25, 0.0]
    assert t.num_sampled == 2
    assert t.completion == "2"
    assert not t.truncated


def test_sampled_segment_needs_logprobs():
    with pytest.raises(ValueError, match="one logprob per token"):
        Segment(tokens=(1, 2), sampled=True, logprobs=(-1.0,))


def test_group_checks_lengths():
    t = _traj()
    with pytest.raises(ValueError, match="1 trajectories but 2 scores"):
        Group(task=t.task, trajectories=(t,), scores=(Score(1.0), Score(0.0)))
    g = Group(task=t.task, trajectories=(t,), scores=(Score(None),))
    assert g.rewards == [None]
