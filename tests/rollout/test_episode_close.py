"""The episode runner's `close(task, state)` hook: called once per episode, however it ended,
with the last state."""

from __future__ import annotations

import asyncio

import pytest

from burnish.envs import MultiTurnEnv
from burnish.models import char_tokenizer
from burnish.rollout import SamplingParams
from burnish.rollout.episode import run_episode, run_episodes
from burnish.rollout.scripted import ScriptedSampler
from burnish.types import Message, Score, StepResult, StopReason, Task


class CountingEnv(MultiTurnEnv):
    """Done when the reply is "stop"; the state counts the steps."""

    name = "counting"

    def __init__(self, fail_close: bool = False) -> None:
        self.closed: list[object] = []
        self.fail_close = fail_close

    def tasks(self, split, seed):
        yield Task("t", (Message("user", "go"),), env=self.name)

    async def step(self, task, state, action):
        n = (state or 0) + 1
        return StepResult((Message("user", "again"),), action.content == "stop", n)

    def score(self, task, trajectory):
        return Score(1.0)

    async def close(self, task, state):
        self.closed.append(state)
        if self.fail_close:
            raise ConnectionError("session already gone")


def _run(env, policy, **kwargs):
    tok = char_tokenizer()
    task = next(env.tasks("train", 0))
    return asyncio.run(
        run_episode(
            env, task, ScriptedSampler(tok, policy), tok, SamplingParams(max_new_tokens=8), **kwargs
        )
    )


def test_close_gets_the_last_state_at_done_and_at_the_turn_limit():
    env = CountingEnv()
    assert _run(env, lambda p: "stop").stop_reason == StopReason.DONE
    assert _run(env, lambda p: "more", max_turns=3).stop_reason == StopReason.MAX_TURNS
    assert _run(env, lambda p: "much too long a reply").stop_reason == StopReason.LENGTH
    assert env.closed == [1, 3, None]  # cut before the first step: no state yet


def test_a_failing_close_makes_the_episode_an_error():
    traj = _run(CountingEnv(fail_close=True), lambda p: "stop")
    assert traj.stop_reason == StopReason.ERROR and "session already gone" in traj.error


def test_a_sampler_failure_still_closes_and_propagates():
    env = CountingEnv()
    calls = []

    def policy(prompt):
        calls.append(prompt)
        if len(calls) == 2:
            raise RuntimeError("sampler down")
        return "more"

    with pytest.raises(RuntimeError, match="sampler down"):
        _run(env, policy)
    assert env.closed == [1]


def test_mixtures_route_close_to_the_task_environment():
    from burnish.envs import EnvMix

    inner = CountingEnv()
    mix = EnvMix([inner])
    tok = char_tokenizer()
    task = next(mix.tasks("train", 0))
    asyncio.run(
        run_episodes(
            mix,
            [task],
            ScriptedSampler(tok, lambda p: "stop"),
            tok,
            SamplingParams(max_new_tokens=8),
        )
    )
    assert inner.closed == [1]
