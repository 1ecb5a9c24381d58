"""Episodes with a tiny random model and `LocalSampler`: the token record holds with a real
sampler (real logprobs, batched generation, multi-turn and tool environments)."""

from __future__ import annotations

import asyncio
from itertools import islice

import pytest
import torch

from burnish.envs import load_env
from burnish.models.tiny import tiny_model
from burnish.rollout.base import SamplingParams
from burnish.rollout.episode import ChatCodec, run_episodes
from burnish.rollout.local import LocalSampler
from burnish.types import StopReason


def eos_biased_model(bias: float = 4.0):
    """A random tiny model whose EOS logit is raised, so turns end after a few tokens."""
    model, tok = tiny_model(seed=3)
    boost = torch.zeros(len(tok))
    boost[tok.eos_token_id] = bias
    model.lm_head.register_forward_hook(lambda mod, inp, out: out + boost.to(out.dtype))
    return model, tok


def check_record(traj, tok, tools=()):
    codec = ChatCodec(tok, tools)
    assistants = [m.content for m in traj.messages if m.role == "assistant"]
    sampled = [codec.decode(s.tokens) for s in traj.segments if s.sampled]
    ended = [s.tokens[-1] == tok.eos_token_id for s in traj.segments if s.sampled]
    assert [
        s.removesuffix("<|end|>") if e else s for s, e in zip(sampled, ended, strict=True)
    ] == assistants
    assert sum(traj.mask) == traj.num_sampled == traj.info["sampled_tokens"]
    if traj.stop_reason != StopReason.LENGTH:
        last = max(i for i, m in enumerate(traj.messages) if m.role == "assistant")
        assert codec.decode(traj.tokens) == codec.render(traj.messages[: last + 1], False)
    else:
        assert codec.decode(traj.tokens) == codec.render(traj.messages[:-1], True) + sampled[-1]


@pytest.mark.parametrize("name", ["guess-number", "calculator", "arithmetic"])
def test_local_sampler_episodes(name):
    model, tok = eos_biased_model()
    env = load_env(name)
    tasks = list(islice(env.tasks("train", 0), 4))
    tasks = [t for t in tasks for _ in range(2)]
    sampler = LocalSampler(model, tok, seed=0)
    params = SamplingParams(max_new_tokens=12)
    trajs = asyncio.run(run_episodes(env, tasks, sampler, tok, params, concurrency=8))
    for traj in trajs:
        assert traj.error is None
        check_record(traj, tok, env.tool_schemas)
        lps = [lp for s in traj.segments if s.sampled for lp in s.logprobs]
        assert all(lp <= 0.0 for lp in lps) and any(lp < 0.0 for lp in lps)
    if name == "guess-number":
        assert max(t.turns for t in trajs) > 1  # the multi-turn path ran with real samples
    assert sampler.stats.generations < sampler.stats.requests  # episodes were batched


@pytest.mark.parametrize("name", ["guess-number", "calculator"])
def test_burnish_tiny_multi_turn_and_tool_episodes(name):
    """The shipped model plays multi-turn games and calls the calculator tool for real; every
    trajectory's mask covers exactly its sampled tokens."""
    from burnish.models import load_model

    model, tok = load_model("burnish-tiny")
    env = load_env(name)
    tasks = [t for t in islice(env.tasks("test", 0), 8) for _ in range(2)]
    sampler = LocalSampler(model, tok, seed=0)
    params = SamplingParams(max_new_tokens=40, seed=0)
    trajs = asyncio.run(run_episodes(env, tasks, sampler, tok, params, concurrency=16))
    for traj in trajs:
        assert traj.error is None
        check_record(traj, tok, env.tool_schemas)
    if name == "calculator":
        calls = [
            c for t in trajs for m in t.messages if m.role == "assistant" for c in m.tool_calls
        ]
        assert calls and all(c.name == "calculator" for c in calls)
        assert any(m.role == "tool" for t in trajs for m in t.messages)
    else:
        assert max(t.turns for t in trajs) > 2
