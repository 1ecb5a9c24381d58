"""`reasoning-gym/TASK`: prompts, scorer, disjoint splits, config kwargs, validation, training."""

from __future__ import annotations

import json
from itertools import islice

import pytest

pytest.importorskip("reasoning_gym")

from burnish.config import loads_config  # noqa: E402
from burnish.envs import load_env, validate_env  # noqa: E402
from burnish.types import Message, StopReason, Trajectory  # noqa: E402


def _reply(task, text):
    messages = (*task.prompt, Message("assistant", text))
    return Trajectory(task, (), messages, StopReason.DONE, 1)


def test_question_is_the_user_turn_and_its_scorer_the_reward():
    env = load_env("reasoning-gym/basic_arithmetic")
    task = next(env.tasks("train", 0))
    assert env.name == task.env == "reasoning-gym/basic_arithmetic"
    assert [m.role for m in task.prompt] == ["user"] and task.prompt[0].content.startswith(
        "Calculate"
    )
    gold = env.score(task, _reply(task, f" {task.answer} "))
    assert gold.value == 1.0 and gold.components == {"score": 1.0, "correct": 1.0}
    assert env.score(task, _reply(task, "no idea")).value == 0.0
    json.dumps(task.info, default=str)  # what the run store writes


def test_splits_are_disjoint_and_seeded():
    env = load_env("reasoning-gym/basic_arithmetic", max_digits=1, max_terms=2)
    train = [t.prompt for t in islice(env.tasks("train", 0), 300)]
    test = [t.prompt for t in islice(env.tasks("test", 0), 100)]
    assert not set(train) & set(test) and len(set(train)) == len(train)
    assert [t.prompt for t in islice(env.tasks("train", 0), 5)] == train[:5]
    assert [t.prompt for t in islice(env.tasks("train", 1), 5)] != train[:5]


def test_generator_config_fields_are_kwargs():
    easy = load_env("reasoning-gym/basic_arithmetic", min_digits=1, max_digits=1)
    hard = load_env("reasoning-gym/basic_arithmetic", min_digits=4, max_digits=4)

    def digits(env):
        return {t.info["metadata"]["num_digits"] for t in islice(env.tasks("test", 0), 20)}

    assert digits(easy) == {1} and digits(hard) == {4}
    with pytest.raises(ValueError, match="does not take 'seed'"):
        load_env("reasoning-gym/basic_arithmetic", seed=3)
    with pytest.raises(ValueError, match="invalid generator config"):
        load_env("reasoning-gym/basic_arithmetic", min_digits=5, max_digits=2)


@pytest.mark.parametrize("task", ["basic_arithmetic", "leg_counting", "spell_backward", "gcd"])
def test_gold_answers_validate(task):
    report = validate_env(load_env(f"reasoning-gym/{task}"), n=30)
    assert report.ok, report.failures


def test_a_generator_without_gold_answers_fails_validation_saying_so():
    report = validate_env(load_env("reasoning-gym/rush_hour"), n=2)
    assert not report.ok and "has no gold answer" in report.failures[0].message


def test_answer_tag_mode_reads_the_last_answer_block():
    env = load_env("reasoning-gym/basic_arithmetic", answer_tag=True)
    task = next(env.tasks("test", 0))
    assert task.prompt[0].role == "system" and "<answer>" in task.prompt[0].content
    right = env.score(task, _reply(task, f"thinking... <answer>{task.answer}</answer>"))
    assert right.value == 1.0
    assert env.score(task, _reply(task, str(task.answer))).value == 0.0  # no block: no answer
    assert validate_env(env, n=10).ok


@pytest.mark.slow
def test_trains_a_few_steps_in_a_mixture(tmp_path):
    """burnish-tiny on reasoning-gym's arithmetic mixed with the built-in one: the run's store
    holds both environments' evaluations and per-environment training rewards."""
    from burnish.store import RunStore
    from burnish.train.loop import train

    cfg = loads_config(
        """
[model]
name = "burnish-tiny"
threads = 1
[[env.mix]]
name = "reasoning-gym/basic_arithmetic"
kwargs = {max_terms = 2, max_digits = 2}
[[env.mix]]
name = "arithmetic"
[rollout]
prompts_per_step = 4
group_size = 4
max_new_tokens = 8
[train]
steps = 3
[eval]
every = 0
n_tasks = 8
samples = 2
""",
        [f"log.run_dir='{tmp_path / 'run'}'"],
    )
    summary = train(cfg)
    assert set(summary["per_env"]["after"]) == {"reasoning-gym/basic_arithmetic", "arithmetic"}
    store = RunStore(tmp_path / "run" / "run.db")
    steps = store.steps()
    assert len(steps) == 3
    assert any("env/reasoning-gym/basic_arithmetic/reward_mean" in s for s in steps)
    assert {r["env"] for r in store.evals()} == set(summary["per_env"]["after"])
    assert "training reward per environment" in (tmp_path / "run" / "report.html").read_text()


def test_composite_takes_its_datasets_as_tables():
    specs = [
        {"name": "gcd", "weight": 1.0, "config": {}},
        {"name": "lcm", "weight": 1.0, "config": {}},
    ]
    env = load_env("reasoning-gym/composite", datasets=specs)
    sources = {t.info["metadata"]["source_dataset"] for t in islice(env.tasks("train", 0), 30)}
    assert sources == {"gcd", "lcm"} and validate_env(env, n=20).ok
