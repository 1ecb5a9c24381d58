"""`openenv/URL`: an OpenEnv server started here on 127.0.0.1 (no Docker), played through its
HTTP and websocket API by burnish's episode runner."""

from __future__ import annotations

import asyncio
from itertools import islice

import pytest

pytest.importorskip("openenv")

from openenv_game import secret_of, serving  # noqa: E402

from burnish.envs import load_env, validate_env  # noqa: E402
from burnish.models import char_tokenizer  # noqa: E402
from burnish.rollout import SamplingParams  # noqa: E402
from burnish.rollout.episode import run_episodes  # noqa: E402
from burnish.rollout.scripted import ScriptedSampler  # noqa: E402
from burnish.types import StopReason  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with serving(max_sessions=4) as url:
        yield url


def _play(env, tasks, policy, **kwargs):
    tok = char_tokenizer()
    return asyncio.run(
        run_episodes(
            env,
            tasks,
            ScriptedSampler(tok, policy),
            tok,
            SamplingParams(max_new_tokens=4),
            **kwargs,
        )
    )


def _search(prompt: str) -> str:
    low, high = 1, 8
    parts = prompt.split("<|assistant|>")[1:]
    for part in parts[:-1]:  # "guess<|end|><|user|>hint<|end|>"
        guess, _, rest = part.partition("<|end|><|user|>")
        hint = rest.removesuffix("<|end|>")
        low, high = (int(guess) + 1, high) if hint == "higher" else (low, int(guess) - 1)
    return str((low + high) // 2)


def test_tasks_are_seeded_resets_with_disjoint_splits(server):
    env = load_env(f"openenv/{server}")
    train = list(islice(env.tasks("train", 0), 20))
    test = list(islice(env.tasks("test", 0), 5))
    assert (
        train[0].prompt[0].content == f"Game {train[0].info['seed']}: guess my number from 1 to 8."
    )
    assert not {t.info["seed"] for t in train} & {t.info["seed"] for t in test}
    assert [t.id for t in islice(env.tasks("train", 0), 3)] == [t.id for t in train[:3]]
    assert env.action_field == "guess"  # the action schema's only string field


def test_episodes_play_through_sessions_and_score_the_return(server):
    env = load_env(f"openenv/{server}", max_sessions=4)
    tasks = list(islice(env.tasks("train", 0), 4))
    trajs = _play(env, [t for t in tasks for _ in range(2)], _search)
    for traj in trajs:
        assert traj.stop_reason == StopReason.DONE and traj.error is None
        assert traj.messages[-1].content == "correct"
        assert traj.messages[-2].content == str(secret_of(traj.task.info["seed"]))
        score = env.score(traj.task, traj)
        assert score.value == 1.0 and score.components == {
            "return": 1.0,
            "steps": float(traj.turns),
        }
    losing = _play(env, tasks[:1], lambda p: "9")[0]
    assert losing.turns == 4 and env.score(losing.task, losing).value == 0.0


@pytest.mark.timeout(120)  # a leaked session would leave the next episode waiting for a slot
def test_cut_episodes_close_their_sessions(server):
    """max_turns ends episodes before the game does; with one session slot (and a server that
    would refuse a fifth), 6 episodes in a row only finish if every session was closed."""
    env = load_env(f"openenv/{server}", max_sessions=1)
    tasks = list(islice(env.tasks("test", 0), 6))
    trajs = _play(env, tasks, lambda p: "9", max_turns=1)
    assert [t.stop_reason for t in trajs] == [StopReason.MAX_TURNS] * 6
    assert all(t.error is None for t in trajs)


def test_validate_checks_that_a_seeded_reset_reproduces_the_prompt(server):
    env = load_env(f"openenv/{server}")
    report = validate_env(env, n=3)
    assert report.ok and "seeded reset" in report.check


def test_remote_urls_need_allow_remote():
    with pytest.raises(ValueError, match="allow_remote"):
        load_env("openenv/http://192.0.2.1:8000")
    env = load_env("openenv/http://192.0.2.1:8000", allow_remote=True)  # no request is made
    assert env.name == "openenv/http://192.0.2.1:8000"
