"""Built-in environments: validate on 200 tasks per split, disjoint splits, scorers, teachers."""

from __future__ import annotations

from itertools import islice

import pytest

from burnish.envs import EnvValidationError, list_envs, load_env, validate_env
from burnish.envs.builtin import safe_eval
from burnish.envs.builtin.arithmetic import ArithmeticEnv
from burnish.envs.builtin.reverse import edit_distance, similarity
from burnish.envs.tools import ToolError
from burnish.types import Message, Score, StopReason, Trajectory

BUILTIN = ["arithmetic", "reverse", "guess-number", "calculator", "keywords"]


def traj_with(task, *assistant):
    messages = list(task.prompt) + [Message("assistant", a) for a in assistant]
    return Trajectory(task, (), tuple(messages), StopReason.DONE, turns=len(assistant))


@pytest.mark.parametrize("name", BUILTIN)
def test_validate_200_tasks_per_split(name):
    env = load_env(name)
    report = validate_env(env, n=200, seed=0)
    assert report.checked == {"train": 200, "test": 200}
    assert report.ok, report.failures[:3]


@pytest.mark.parametrize("name", BUILTIN)
def test_splits_disjoint_deterministic_and_ids_unique(name):
    env = load_env(name)
    train = list(islice(env.tasks("train", 5), 300))
    test = list(islice(env.tasks("test", 5), 300))
    assert {t.prompt for t in train}.isdisjoint({t.prompt for t in test})
    assert len({t.id for t in train}) == len(train)
    assert [t.id for t in islice(env.tasks("train", 5), 50)] == [t.id for t in train[:50]]
    assert [t.id for t in islice(env.tasks("train", 6), 50)] != [t.id for t in train[:50]]
    assert all(t.env == name for t in train + test)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        next(env.tasks("dev", 0))


def test_every_builtin_is_listed():
    assert set(BUILTIN) <= set(list_envs())


def test_arithmetic_strict_format():
    env = load_env("arithmetic")
    task = next(env.tasks("train", 0))
    gold = str(task.answer)
    assert env.score(task, traj_with(task, f" {gold}\n")).value == 1.0
    for bad in (f"{gold}.", f"= {gold}", f"+{gold}", str(task.answer + 1), ""):
        assert env.score(task, traj_with(task, bad)).value == 0.0, bad
    assert env.score(task, traj_with(task, "x")).components["format"] == 0.0


def test_reverse_partial_credit():
    assert edit_distance("kitten", "sitting") == 3
    assert similarity("abc", "abc") == 1.0 and similarity("", "") == 1.0
    env = load_env("reverse")
    task = next(env.tasks("train", 0))
    gold = task.answer
    partial = env.score(task, traj_with(task, gold[:-1])).value
    assert 0.0 < partial < 1.0
    assert partial == pytest.approx(1 - 1 / len(gold))


def test_guess_number_rewards_fewer_turns():
    env = load_env("guess-number")
    task = next(t for t in env.tasks("train", 0) if len(env.gold_messages(t)) >= 4)
    low, high, secret = task.info["low"], task.info["high"], task.answer
    assert env.score(task, traj_with(task, str(secret))).value == 1.0  # a lucky first guess
    wrong = [str(v) for v in range(low, high + 1) if v != secret]
    slow = env.score(task, traj_with(task, *wrong[:5], str(secret)))
    assert slow.components["won"] == 1.0 and 0.0 < slow.value < 1.0
    assert env.score(task, traj_with(task, *wrong[:6])).value == 0.0


async def _step(env, task, text):
    return await env.step(task, None, Message("assistant", text))


def test_guess_number_feedback():
    import asyncio

    env = load_env("guess-number")
    task = next(env.tasks("test", 0))
    secret = task.answer
    assert asyncio.run(_step(env, task, str(secret))).done
    above = asyncio.run(_step(env, task, str(secret + 1)))
    assert above.observation[0].content == "lower" and not above.done
    assert "say a number" in asyncio.run(_step(env, task, "hello")).observation[0].content


def test_calculator_is_safe_and_exact():
    assert safe_eval("12*7+5") == 89 and safe_eval("-(3-5)**2") == -4
    for bad in ("__import__('os')", "open('x')", "2**1000", "1/0", "a+1", "[1]"):
        with pytest.raises(ToolError):
            safe_eval(bad)
    env = load_env("calculator")
    task = next(env.tasks("train", 0))
    no_tool = env.score(task, traj_with(task, str(task.answer)))
    assert no_tool.value == 1.0 and no_tool.components["used_tool"] == 0.0


def test_keywords_fraction_and_components():
    env = load_env("keywords")
    task = next(env.tasks("train", 0))
    k1, k2, k3 = task.info["keywords"]
    assert env.score(
        task, traj_with(task, f"A {k1} near the {k2.upper()}.")
    ).value == pytest.approx(2 / 3)
    stuffed = env.score(task, traj_with(task, f"{k1} {k2} {k3}"))
    assert stuffed.value == 1.0  # gameable on purpose: judges and monitors catch this
    assert env.score(task, traj_with(task, f"{k1}s")).value == 0.0  # whole words only


class BrokenArithmetic(ArithmeticEnv):
    """Off by one: the gold answer can never be right."""

    def score_answer(self, task, answer):
        return Score(float(answer.strip() == str(task.answer + 1)))


def test_broken_scorer_fails_validate_naming_the_task():
    env = BrokenArithmetic()
    task = next(env.tasks("train", 0))
    with pytest.raises(EnvValidationError, match=task.id.replace("+", r"\+")):
        env.validate(task)
    report = validate_env(env, n=5)
    assert not report.ok and len(report.failures) == 10
    assert report.failures[0].task_id == task.id and task.id in report.failures[0].message
