"""The config-to-records layer, the units of the token budgets, the task cursor, one event loop
per run and the sampler/trainer mismatch metric."""

import asyncio
from itertools import islice

import pytest
import torch
from train_helpers import run_overrides

from burnish.algorithms.mismatch import mismatch_sums
from burnish.config import load_config
from burnish.envs import EnvMix, load_env
from burnish.store import RunStore
from burnish.train import loop as loop_module
from burnish.train.groups import TaskCursor, shape_rewards
from burnish.train.plan import RunPlan, ShapingSettings, max_sampled_tokens
from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory


def test_plan_translates_every_section():
    cfg = load_config(
        None,
        [
            "algorithm.loss=dr_grpo",
            "algorithm.kl_coef=0.1",
            "algorithm.overlong_cache=4",
            "rollout.max_new_tokens=10",
            "rollout.temperature=0.7",
            "train.shared_prefix=false",
            "train.micro_batch_size=3",
            "eval.samples=2",
        ],
    )
    plan = RunPlan.from_config(cfg, load_env("arithmetic"))
    assert plan.loss.name == "dr_grpo" and plan.loss.kl_coef == 0.1
    assert plan.loss.max_completion_len == 10 == plan.shaping.max_sampled_tokens
    assert plan.shaping.advantage_scale == "none"  # dr_grpo's own default
    assert not plan.collect.dynamic_sampling
    assert plan.collect.sampling.temperature == 0.7 and plan.collect.sampling.seed is None
    assert plan.step.shared_prefix is False and plan.step.micro_batch_size == 3
    assert plan.step.temperature == 0.7
    assert plan.eval.samples == 2 and plan.eval.max_new_tokens == 10
    dapo = RunPlan.from_config(load_config(None, ["algorithm.loss=dapo"]), load_env("arithmetic"))
    assert dapo.collect.dynamic_sampling and dapo.shaping.advantage_scale == "group"
    off = load_config(None, ["algorithm.loss=dapo", "algorithm.dynamic_sampling=false"])
    assert not RunPlan.from_config(off, load_env("arithmetic")).collect.dynamic_sampling
    kl = load_config(None, ["algorithm.kl_coef=0.1", "algorithm.kl_bias_correction=true"])
    assert RunPlan.from_config(kl, load_env("arithmetic")).loss.kl_bias_correction


def test_gspo_token_is_selectable():
    assert load_config(None, ["algorithm.loss=gspo_token"]).algorithm.loss == "gspo_token"


def test_max_sampled_tokens_counts_sampled_tokens_over_turns():
    """L_max is in sampled tokens: per-turn cap times the turn limit, never the episode budget."""
    guess = load_env("guess-number")
    assert max_sampled_tokens(8, None, load_env("arithmetic")) == 8
    assert max_sampled_tokens(8, None, guess) == 8 * guess.max_turns
    assert max_sampled_tokens(8, 2, guess) == 16  # env.max_turns overrides the env's own
    cfg = load_config(None, ["env.name=guess-number", "env.max_tokens=50"])
    plan = RunPlan.from_config(cfg, guess)
    assert plan.shaping.max_sampled_tokens == cfg.rollout.max_new_tokens * guess.max_turns
    assert plan.collect.budget.kwargs() == {"max_tokens": 50}


def test_overlong_penalty_uses_sampled_tokens_of_all_turns():
    task = Task(id="t", prompt=(Message("user", "q"),))
    # two turns of 5 sampled tokens each, with 40 prompt/environment tokens around them
    segs = (
        Segment(tuple(range(20)), False),
        Segment((1,) * 5, True, (0.0,) * 5),
        Segment(tuple(range(20)), False),
        Segment((1,) * 5, True, (0.0,) * 5),
    )
    traj = Trajectory(task, segs, task.prompt, StopReason.DONE, turns=2)
    group = Group(task, (traj,), (Score(1.0),))
    settings = ShapingSettings(
        "group", overlong_cache=4, max_sampled_tokens=12, mask_truncated=False
    )
    (shaped,) = shape_rewards([group], settings)
    # 10 sampled tokens: 2 tokens into the last 4 of a 12-token budget -> -(10 - 8) / 4 = -0.5
    assert shaped.scores[0].components["overlong"] == pytest.approx(-0.5)
    assert shaped.scores[0].value == pytest.approx(0.5)


def test_task_cursor_resumes_where_it_stopped():
    env = EnvMix([load_env("arithmetic"), load_env("reverse")], [0.7, 0.3])
    whole = TaskCursor(env, seed=3)
    first = whole.take(5) + whole.take(4)
    resumed = TaskCursor(env, seed=3, drawn=5)
    assert [t.id for t in resumed.take(4)] == [t.id for t in first[5:]]
    assert [t.id for t in first] == [t.id for t in islice(env.tasks("train", 3), 9)]
    assert {t.env for t in first} <= {"arithmetic", "reverse"}


def test_task_cursor_starts_a_finite_split_over():
    class Two:
        name = "two"

        def tasks(self, split, seed):
            yield from (Task(id=str(i), prompt=()) for i in range(2))

    assert [t.id for t in TaskCursor(Two(), seed=0).take(5)] == ["0", "1", "0", "1", "0"]


def test_mismatch_sums_by_hand_and_padding_poison():
    trainer = torch.tensor([[-1.0, -2.0, float("nan")]], dtype=torch.float64)
    sampler = torch.tensor([[-1.0, -2.5, float("inf")]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    k3, n, ratio_max = mismatch_sums(trainer, sampler, mask)
    # token 0: log r = 0 -> 0; token 1: log r = 0.5 -> e^0.5 - 1 - 0.5
    assert k3 == pytest.approx(float(torch.tensor(0.5).exp()) - 1.5)
    assert n == 2 and ratio_max == pytest.approx(float(torch.tensor(0.5).exp()))


def test_one_event_loop_per_run_and_mismatch_logged(tiny_dir, tmp_path, monkeypatch):
    """A whole run (evals before, during and after, probes, sampling) runs in one event loop."""
    calls = []
    real_run = asyncio.run
    monkeypatch.setattr(asyncio, "run", lambda coro, **kw: calls.append(1) or real_run(coro, **kw))
    overrides = run_overrides(tiny_dir, tmp_path / "r", "eval.every=2", "train.steps=3")
    overrides += ["monitors.options={probe_every = 1}"]
    loop_module.train(load_config(None, overrides))
    assert len(calls) == 1
    store = RunStore.open(tmp_path / "r")
    trained = [s for s in store.steps() if "loss/total" in s]
    store.close()
    assert trained, "no step trained"
    for s in trained:  # float32 on CPU: the sampler and the trainer agree closely
        assert 0 <= s["mismatch/k3"] < 1e-4 and s["mismatch/ratio_max"] < 1.01
