"""Rollout workers and judge workers: the Ray actors that turn slices into scored groups.

A `RolloutWorker` builds what a run samples with from the run's configuration: the environment,
the scorers, the tokenizer and a sampler, either its own copy of the policy
(`LocalSampler`, the weights loaded from the trainer after every step: "broadcast") or a server
URL (`OpenAISampler`, the adapter the trainer wrote loaded by path: "file + load"). `sample`
plays a slice's episodes (one `run_episodes` call, so a local sampler batches them all), scores
every group whole and returns the `Group` records tagged with the policy version the worker
holds. Nothing but records crosses the actor boundary: configuration as JSON data, slices and
groups as frozen dataclasses, weights as a state dict of tensors.

The actor is synchronous on purpose: Ray runs its calls one at a time, in the order the trainer
sent them, so a `load` sent after a `sample` never changes the weights under a slice being
sampled, and the version a group is tagged with is the one that sampled all of it.

A `JudgeWorker` holds the run's scorers (judges) and scores groups for the rollout workers when
`scale.judge_workers > 0`; the rollout worker then only samples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

import torch

from burnish.algorithms import keep_informative_groups
from burnish.config import RunConfig
from burnish.envs import EnvMix
from burnish.rollout.episode import run_episodes
from burnish.scale.buffer import Slice
from burnish.scoring import score_group
from burnish.seeds import sampling_seed
from burnish.train.groups import rewards_of
from burnish.train.plan import RunPlan
from burnish.types import Group, Task, Trajectory


def load_trainable(policy: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a trainable state (`trainable_state`) into a policy of the same layout."""
    missing = set(trainable_state(policy)) - set(state)
    if missing:
        raise RuntimeError(f"the broadcast weights lack {sorted(missing)[:3]}")
    with torch.no_grad():
        params = dict(policy.named_parameters())
        for name, value in state.items():
            params[name].copy_(value)


def trainable_state(policy: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights that training changes (the LoRA adapter, or every weight), detached copies."""
    return {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}


class RolloutWorker:
    """Samples and scores slices (see the module docstring); wrapped by `ray.remote`.

    Args:
        config: the run's configuration as JSON data (`RunConfig.model_dump(mode="json")`).
        index: the worker's index (its URL, its adapter-name scope).
        scope: the run's adapter-name scope (URL workers).
        judges: judge-worker actor handles; empty: this worker scores its own groups.
    """

    def __init__(
        self, config: dict[str, Any], index: int, scope: str = "", judges: list | None = None
    ) -> None:
        from burnish.models import set_threads
        from burnish.models.load import load_tokenizer
        from burnish.rollout import LocalSampler
        from burnish.train.setup import build_env, build_policy, build_scorers

        self.config = RunConfig.model_validate(config)
        c, s = self.config, self.config.scale
        set_threads(c.model.threads)
        self.env = build_env(c.env)
        self.plan = RunPlan.from_config(c, self.env)
        self.judges = list(judges or [])
        self.scorers = (
            [] if self.judges else build_scorers(self.env, c.env_score, c.judges, c.log.run_dir)
        )
        self.url = s.rollout_urls[index % len(s.rollout_urls)] if s.rollout_urls else None
        self.policy = None
        if self.url is None:
            self.policy, self.tokenizer = build_policy(c.model, c.lora, seed=c.train.seed)
            self.sampler: Any = LocalSampler(self.policy, self.tokenizer)
        else:
            from burnish.rollout.openai_sampler import OpenAISampler

            self.tokenizer = load_tokenizer(
                c.model.name, trust_remote_code=c.model.trust_remote_code, chat=c.model.chat()
            )
            self.sampler = OpenAISampler(
                self.url,
                c.sampler.model or c.model.name,
                c.sampler.api_key_env,
                scope=f"{scope}-w{index}",
                timeout=c.sampler.timeout,
                max_concurrency=c.sampler.max_concurrency,
                max_retries=c.sampler.max_retries,
                retry_backoff=c.sampler.retry_backoff,
                max_lora_rank=c.sampler.max_lora_rank,
            )
        self.version: int | None = None
        """The policy version this worker samples (None until the first `load`)."""
        self._loop = asyncio.new_event_loop()

    def ready(self) -> int:
        """The worker's process id, once it is built."""
        return os.getpid()

    def load(self, weights: Any, version: int) -> int:
        """Sample policy `version` from now on: `weights` is a trainable state (in-process
        policy) or the directory of a saved adapter (a server loads it)."""
        if self.policy is not None:
            load_trainable(self.policy, weights)
        else:
            self._loop.run_until_complete(self.sampler.serve_saved(weights))
        self.version = version
        return version

    def sample(self, s: Slice) -> list[Group]:
        """The slice's groups, sampled and scored whole, tagged with this worker's version."""
        if self.version is None:
            raise RuntimeError("sample() before the first load(): the worker holds no policy")
        return self._loop.run_until_complete(_sample(self, s))


async def _sample(self: RolloutWorker, s: Slice) -> list[Group]:
    """`RolloutWorker.sample` (module-level: Ray makes an actor with any async method an async
    actor, whose calls may interleave; this one must run them one by one)."""
    c = self.plan.collect
    env = self.env.envs if isinstance(self.env, EnvMix) else self.env
    params = dataclasses.replace(c.sampling, seed=sampling_seed(c.seed, s.step, s.round_))
    trajs = await run_episodes(
        env,
        [task for task in s.tasks for _ in range(c.group_size)],
        self.sampler,
        self.tokenizer,
        params,
        concurrency=c.concurrency,
        first_index=s.first * c.group_size,
        **c.budget.kwargs(),
    )
    if trajs and all(t.error is not None for t in trajs):
        raise RuntimeError(
            f"every episode of slice {s.key} failed in its environment; the first error: "
            f"{trajs[0].error}"
        )
    per_task = [trajs[i * c.group_size : (i + 1) * c.group_size] for i in range(len(s.tasks))]
    groups = await asyncio.gather(
        *(_score(self, i, task, ts) for i, (task, ts) in enumerate(zip(s.tasks, per_task)))
    )
    return [dataclasses.replace(g, policy_version=self.version) for g in groups]


async def _score(self: RolloutWorker, i: int, task: Task, trajs: list[Trajectory]) -> Group:
    if self.judges:
        group = await self.judges[i % len(self.judges)].score.remote(task, trajs)
    else:
        group = await score_group(self.scorers, task, trajs)
    if self.plan.collect.dynamic_sampling:
        kept = bool(keep_informative_groups(rewards_of([group]))[0])
        group = dataclasses.replace(group, kept=kept)
    return group


class JudgeWorker:
    """Scores groups with the run's scorers (its judges); wrapped by `ray.remote` as an async
    actor, so its calls overlap as a pool of concurrent judge clients."""

    def __init__(self, config: dict[str, Any]) -> None:
        from burnish.train.setup import build_env, build_scorers

        c = RunConfig.model_validate(config)
        env = build_env(c.env)
        self.scorers = build_scorers(env, c.env_score, c.judges, c.log.run_dir)

    def ready(self) -> int:
        return 0

    async def score(self, task: Task, trajectories: list[Trajectory]) -> Group:
        return await score_group(self.scorers, task, trajectories)
