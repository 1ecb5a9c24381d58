"""`verifiers/NAME`: a verifiers taskset and a multi-turn verifiers Env, both defined here (no
hub), run through burnish's episode runner and scored by their own rewards."""

from __future__ import annotations

import asyncio
import random
import re
import textwrap
from itertools import islice

import pytest

pytest.importorskip("verifiers")

from burnish.envs import load_env, validate_env  # noqa: E402
from burnish.models import char_tokenizer  # noqa: E402
from burnish.rollout import SamplingParams  # noqa: E402
from burnish.rollout.episode import run_episodes  # noqa: E402
from burnish.rollout.scripted import ScriptedSampler  # noqa: E402
from burnish.types import StopReason  # noqa: E402

SUMS = """
import verifiers.v1 as vf


class SumData(vf.TaskData):
    answer: int


class SumTask(vf.Task[SumData, vf.State, vf.TaskConfig]):
    @vf.reward(weight=1.0)
    async def correct(self, task, trace) -> float:
        return float(trace.last_reply == str(task.answer))

    @vf.reward(weight=0.5)
    async def short(self, trace) -> float:
        return float(len(trace.last_reply) <= 3)

    @vf.metric
    async def reply_length(self, trace) -> float:
        return float(len(trace.last_reply))

    async def validate(self, runtime=None):
        return self.data.answer == sum(int(x) for x in self.data.prompt.rstrip("=").split("+"))


class SumConfig(vf.TasksetConfig):
    terms: int = 2


class SumTaskset(vf.Taskset[SumTask, SumConfig]):
    def load(self):
        for i in range(60):
            xs = [(i * 7 + k * 3) % 10 for k in range(self.config.terms)]
            prompt = "+".join(map(str, xs)) + "="
            yield SumTask(SumData(prompt=prompt, system_prompt="Add.", answer=sum(xs)),
                          self.config.task)


__all__ = ["SumTaskset"]
"""

GAME = '''
import random
import verifiers.v1 as vf


class GameData(vf.TaskData):
    seed: int


class GameTask(vf.Task[GameData, vf.State, vf.TaskConfig]):
    @vf.metric
    async def guesses(self, trace) -> float:
        return float(trace.num_turns)


class GameEnvConfig(vf.EnvConfig):
    player: vf.AgentConfig = vf.AgentConfig()


class GameEnv(vf.Env[GameEnvConfig]):
    """Find a secret from 1 to 8 in at most 4 guesses; the env answers higher / lower."""

    async def run(self, task, agents):
        secret = random.Random(task.data.seed).randint(1, 8)
        won = 0.0
        async with agents.player.interaction(task) as game:
            segment = await game.turn()
            for guess_no in range(1, 5):
                if segment.terminated:
                    break
                if segment.last_reply == str(secret):
                    won = 1.0
                    break
                if guess_no == 4:
                    break
                low = segment.last_reply.isdigit() and int(segment.last_reply) < secret
                segment = await game.turn("higher" if low else "lower")
        game.trace.record_reward("won", won)


class GameTaskset(vf.Taskset[GameTask, vf.TasksetConfig]):
    def load(self):
        for seed in range(30):
            yield GameTask(GameData(prompt=f"Game {seed}: guess 1-8.", seed=seed), self.config.task)


__all__ = ["GameTaskset", "GameEnv"]
'''


@pytest.fixture
def vf_modules(tmp_path, monkeypatch):
    (tmp_path / "burnish_test_vf_sums.py").write_text(textwrap.dedent(SUMS))
    (tmp_path / "burnish_test_vf_game.py").write_text(textwrap.dedent(GAME))
    monkeypatch.syspath_prepend(str(tmp_path))


def _play(env, tasks, policy, max_new_tokens=16):
    tok = char_tokenizer()
    sampler = ScriptedSampler(tok, policy)
    params = SamplingParams(max_new_tokens=max_new_tokens)
    return asyncio.run(run_episodes(env, tasks, sampler, tok, params))


def test_single_turn_taskset_runs_with_its_rubric(vf_modules):
    env = load_env("verifiers/burnish-test-vf-sums")
    task = next(env.tasks("train", 0))
    assert [m.role for m in task.prompt] == ["system", "user"] and task.env == env.name
    gold = str(task.answer)
    trajs = _play(env, [task, task], lambda prompt: gold if prompt.count("=") else "x")
    trajs += _play(env, [task], lambda prompt: "wrong answer")
    right, _, wrong = (env.score(task, t) for t in trajs)
    assert trajs[0].stop_reason == StopReason.DONE and trajs[0].turns == 1
    # reward = 1.0 * correct + 0.5 * short; the metric is a component, not in the reward
    assert right.value == 1.5 and right.components["reply_length"] == len(gold)
    assert wrong.value == 0.0 and wrong.components == {
        "correct": 0.0,
        "short": 0.0,
        "reply_length": 12.0,
    }


def test_taskset_kwargs_splits_and_validation(vf_modules):
    env = load_env("verifiers/burnish-test-vf-sums", terms=3)
    train = list(env.tasks("train", 0))
    test = list(env.tasks("test", 0))
    assert len(train) + len(test) == 60 and test
    assert not {t.info["key"] for t in train} & {t.info["key"] for t in test}
    assert train[0].prompt[1].content.count("+") == 2
    assert [t.id for t in env.tasks("train", 0)] == [t.id for t in train]  # seeded order
    assert validate_env(env, n=100).ok
    with pytest.raises(Exception, match="does not take 'term'"):
        load_env("verifiers/burnish-test-vf-sums", term=3)


def test_multi_turn_env_protocol_maps_onto_the_episode_runner(vf_modules):
    """GameEnv.run drives turns (`interaction.turn(hint)`); each hint is an observation, the
    game's end is `done`, and the reward it records on the trace is the score."""
    env = load_env("verifiers/burnish-test-vf-game")
    tasks = list(islice(env.tasks("train", 0), 6))
    secrets = {t.id: random.Random(t.info["data"]["seed"]).randint(1, 8) for t in tasks}

    def binary_search(prompt: str) -> str:
        """The gold player: halve [low, high] on each (guess, hint) pair of the transcript."""
        turns = re.findall(r"<\|(user|assistant)\|>([^<]*)", prompt)
        low, high = 1, 8
        for (_, guess), (_, hint) in zip(turns[1::2], turns[2::2]):
            low, high = (int(guess) + 1, high) if hint == "higher" else (low, int(guess) - 1)
        return str((low + high) // 2)

    trajs = _play(env, tasks, binary_search)
    for traj in trajs:
        score = env.score(traj.task, traj)
        assert traj.stop_reason == StopReason.DONE, traj.messages
        assert traj.messages[-1].content == str(secrets[traj.task.id])
        assert score.value == 1.0 and score.components["guesses"] == traj.turns
        observations = [
            m.content for m in traj.messages[len(traj.task.prompt) :] if m.role == "user"
        ]
        assert set(observations) <= {"higher", "lower"} and len(observations) == traj.turns - 1


def test_a_cut_episode_is_scored_as_verifiers_scores_a_turn_limit(vf_modules):
    env = load_env("verifiers/burnish-test-vf-game")
    task = next(env.tasks("train", 0))
    secret = random.Random(task.info["data"]["seed"]).randint(1, 8)
    wrong = str(1 if secret != 1 else 2)
    (traj,) = asyncio.run(
        run_episodes(env, [task], ScriptedSampler(char_tokenizer(), lambda p: wrong),
                     char_tokenizer(), SamplingParams(max_new_tokens=4), max_turns=2)
    )  # fmt: skip
    assert traj.stop_reason == StopReason.MAX_TURNS and traj.turns == 2
    score = env.score(task, traj)
    assert score.value == 0.0 and score.components == {"guesses": 2.0, "won": 0.0}


def test_tasks_without_a_model_free_check_fail_validation_saying_so(vf_modules):
    report = validate_env(load_env("verifiers/burnish-test-vf-game"), n=2)
    assert not report.ok and "no model-free check" in report.failures[0].message


def test_a_failing_reward_is_unscorable_not_zero(vf_modules, tmp_path):
    (tmp_path / "burnish_test_vf_broken.py").write_text(
        SUMS.replace("return float(len(trace.last_reply) <= 3)", "raise RuntimeError('judge down')")
    )
    env = load_env("verifiers/burnish-test-vf-broken")
    task = next(env.tasks("train", 0))
    (traj,) = _play(env, [task], lambda p: "1")
    score = env.score(task, traj)
    assert score.value is None and "judge down" in score.info["error"]
