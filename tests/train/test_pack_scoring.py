import asyncio

import pytest
import torch

from burnish.rollout.pack import pack
from burnish.scoring import ScorerSpec, combine, score_group
from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory

TASK = Task(id="t", prompt=(Message("user", "q"),), env="e")


def _traj(segments, stop=StopReason.DONE):
    return Trajectory(task=TASK, segments=segments, messages=TASK.prompt, stop_reason=stop)


def test_pack_mask_comes_from_segments():
    a = _traj(
        (
            Segment((1, 2, 3), False),
            Segment((4, 5), True, (-0.1, -0.2)),
            Segment((6,), False),
            Segment((7,), True, (-0.3,)),
        )
    )
    b = _traj((Segment((1,), False), Segment((9,), True, (-1.0,))), stop=StopReason.LENGTH)
    c = _traj((Segment((1,), False), Segment((8,), True, (-2.0,))))
    g = Group(
        task=TASK,
        trajectories=(a, b, c),
        scores=(Score(1.0), Score(0.0), Score(None)),
        advantages=(0.7, -0.7, None),
    )
    dropped = Group(task=TASK, trajectories=(a,), scores=(Score(1.0),), kept=False)
    batch = pack([g, dropped], pad_id=0)
    assert batch.size == 2  # the unscorable rollout is left out
    assert batch.tokens_B_T.tolist() == [[1, 2, 3, 4, 5, 6, 7], [1, 9, 0, 0, 0, 0, 0]]
    assert batch.mask_B_T.tolist() == [[0, 0, 0, 1, 1, 0, 1], [0, 1, 0, 0, 0, 0, 0]]
    assert torch.allclose(batch.sampler_logp_B_T[0], torch.tensor([0, 0, 0, -0.1, -0.2, 0, -0.3]))
    assert batch.advantages_B.tolist() == pytest.approx([0.7, -0.7])
    assert batch.lengths_B.tolist() == [7, 2]
    assert batch.mask_B_T.sum() == 4  # the group that is not kept adds no row

    filtered = pack([g], mask_truncated=True)
    assert filtered.mask_B_T[1].sum() == 0  # overlong filtering zeroes the truncated row
    assert filtered.size == 2


def test_pack_rejects_empty_and_mismatch():
    a = _traj((Segment((1,), False), Segment((2,), True, (-0.1,))))
    g = Group(task=TASK, trajectories=(a,), scores=(Score(None),), advantages=(None,))
    with pytest.raises(ValueError, match="nothing to train on"):
        pack([g])
    with pytest.raises(ValueError, match="1 trajectories but 2 advantages"):
        Group(task=TASK, trajectories=(a,), scores=(Score(None),), advantages=(0.1, 0.2))
    with pytest.raises(ValueError, match="needs its advantages"):
        pack([Group(task=TASK, trajectories=(a,), scores=(Score(1.0),))])


class _Fixed:
    def __init__(self, name, values):
        self.name, self.values = name, values

    async def score_group(self, task, trajectories):
        return [Score(v, {"part": 1.0}) for v in self.values]


def test_combine_weights_roles_and_unscorable():
    env = ScorerSpec(_Fixed("env", [1.0, 0.0, 1.0]), weight=1.0)
    judge = ScorerSpec(_Fixed("judge", [0.5, 1.0, None]), weight=2.0)
    held = ScorerSpec(_Fixed("held", [0.0, 1.0, 1.0]), role="monitor")
    trajs = [_traj((Segment((1,), True, (-1.0,)),))] * 3
    gs = asyncio.run(score_group([env, judge, held], TASK, trajs))
    assert isinstance(gs, Group) and gs.kept and gs.advantages is None
    assert [s.value for s in gs.scores] == [2.0, 2.0, None]  # None from a reward judge -> None
    assert gs.heldout == {"held": (0.0, 1.0, 1.0)}
    assert gs.scores[0].components["judge"] == 0.5
    assert gs.scores[0].components["judge/part"] == 1.0
    assert gs.scores[0].components["held"] == 0.0
    # a monitor scorer that fails does not make the rollout unscorable
    s = combine([(env, Score(1.0)), (held, Score(None))])
    assert s.value == 1.0


def test_score_group_needs_a_reward_scorer():
    held = ScorerSpec(_Fixed("held", [0.0]), role="monitor")
    with pytest.raises(ValueError, match="role 'reward'"):
        asyncio.run(score_group([held], TASK, [_traj((Segment((1,), True, (-1.0,)),))]))


def test_env_scorer_leaves_errored_episodes_unscorable():
    from burnish.scoring import EnvScorer

    class Env:
        def score(self, task, trajectory):
            return Score(0.0)

    ok = _traj((Segment((1,), True, (-1.0,)),))
    broken = Trajectory(
        task=TASK,
        segments=ok.segments,
        messages=TASK.prompt,
        stop_reason=StopReason.ERROR,
        error="RuntimeError: backend down",
    )
    scores = asyncio.run(EnvScorer(Env()).score_group(TASK, [ok, broken]))
    assert scores[0].value == 0.0
    assert scores[1].value is None and "backend down" in scores[1].info["error"]
