"""A step's groups: draw tasks, sample and score them, then turn rewards into advantages.

`collect_groups` returns one `Group` record per task seen, with its scores, held-out scores and
`kept` flag; `shape_rewards` and `with_advantages` return the same records with their rewards
shaped and their advantages filled in. Everything after (monitors, packing, the store) reads
this one list.

How it departs from the papers:
- rewards of unscorable rollouts (a judge failed) are None; those rollouts take no part in the
  group statistics and get no gradient (never a reward of 0);
- dynamic sampling (DAPO) filters on the total reward's group std and tops up with at most
  `max_resample_rounds` extra rounds; if the batch is still short it trains on what it has;
- the soft overlong punishment is added to the reward after the dynamic-sampling filter decided,
  so a length penalty alone never makes a group look informative.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from burnish.algorithms import group_advantages, keep_informative_groups, soft_overlong_penalty
from burnish.envs import EnvMix
from burnish.rollout.episode import run_episodes
from burnish.scoring import ScorerSpec, score_group
from burnish.seeds import sampling_seed
from burnish.train.plan import CollectSettings, ShapingSettings
from burnish.types import Group, Score, Task


@dataclass
class TaskCursor:
    """The run's training tasks in the environment's own order, resumable by a count.

    A finite split starts over when it runs out. `drawn` counts every task handed out, so a
    resumed run that sets it continues with the next task.
    """

    env: Any
    seed: int
    drawn: int = 0
    _it: Iterator[Task] | None = field(default=None, repr=False)

    def _restart(self) -> Iterator[Task]:
        self._it = iter(self.env.tasks("train", self.seed))
        return self._it

    def _next(self) -> Task:
        it = self._it or self._restart()
        task = next(it, None)
        if task is None:
            task = next(self._restart(), None)
            if task is None:
                raise ValueError(f"environment {self.env.name!r} has no train tasks")
        return task

    def take(self, n: int) -> list[Task]:
        if self._it is None:  # a fresh or resumed cursor: skip what earlier steps drew
            for _ in range(self.drawn):
                self._next()
        out = [self._next() for _ in range(n)]
        self.drawn += n
        return out


def rewards_of(groups: Sequence[Group]) -> torch.Tensor:
    """[P, G] float64 rewards, NaN for unscorable rollouts."""
    return torch.tensor(
        [[math.nan if v is None else v for v in g.rewards] for g in groups], dtype=torch.float64
    )


async def collect_groups(
    settings: CollectSettings,
    tasks: TaskCursor,
    sampler,
    tokenizer,
    scorers: Sequence[ScorerSpec],
    step: int,
) -> tuple[list[Group], dict[str, float]]:
    """Sample and score the groups of one step (dynamic sampling tops up the kept ones).

    Returns every group seen (the monitors look at all of them; those dynamic sampling dropped
    have `kept=False`) and the sampling metrics.
    """
    s = settings
    env = tasks.env
    episode_env = env.envs if isinstance(env, EnvMix) else env  # each task runs in its own env
    groups: list[Group] = []
    rounds = 1 + (s.max_resample_rounds if s.dynamic_sampling else 0)
    for round_ in range(rounds):
        drawn = tasks.take(s.prompts_per_step - sum(g.kept for g in groups))
        params = replace(s.sampling, seed=sampling_seed(s.seed, step, round_))
        repeated = [task for task in drawn for _ in range(s.group_size)]
        trajs = await run_episodes(
            episode_env,
            repeated,
            sampler,
            tokenizer,
            params,
            concurrency=s.concurrency,
            **s.budget.kwargs(),
        )
        if trajs and all(t.error is not None for t in trajs):
            raise RuntimeError(
                f"every episode of step {step} failed in its environment; the first error: "
                f"{trajs[0].error}"
            )
        for i, task in enumerate(drawn):
            group = await score_group(
                scorers, task, trajs[i * s.group_size : (i + 1) * s.group_size]
            )
            if s.dynamic_sampling:
                group = replace(group, kept=bool(keep_informative_groups(rewards_of([group]))[0]))
            groups.append(group)
        if sum(g.kept for g in groups) >= s.prompts_per_step:
            break
    stats = {
        "sampling/rounds": float(round_ + 1),
        "sampling/groups_seen": float(len(groups)),
        "sampling/groups_kept": float(sum(g.kept for g in groups)),
    }
    return groups, stats


@dataclass
class LocalGroups:
    """The run's groups sampled in this process (`collect_groups`); `burnish.scale.driver`'s
    `ScaledGroups` is the same source over Ray rollout workers."""

    settings: CollectSettings
    tasks: TaskCursor
    sampler: Any
    tokenizer: Any
    scorers: Sequence[ScorerSpec]

    async def collect(self, step: int) -> tuple[list[Group], dict[str, float]]:
        return await collect_groups(
            self.settings, self.tasks, self.sampler, self.tokenizer, self.scorers, step
        )

    async def sync(self, policy: Any, version: int) -> None:
        """Nothing to do: the sampler shares the policy (or `Sampler.sync` serves it)."""

    def cursor(self) -> dict[str, Any]:
        """The data cursor a checkpoint keeps."""
        return {"tasks": self.tasks.drawn}

    def load_cursor(self, cursor: dict[str, Any]) -> None:
        self.tasks.drawn = int(cursor.get("tasks", 0))

    def stats(self) -> dict[str, Any]:
        """What the source did beyond sampling (nothing to report in process)."""
        return {}

    async def close(self) -> None:
        pass


def shape_rewards(groups: Sequence[Group], settings: ShapingSettings) -> list[Group]:
    """Add the soft overlong punishment (DAPO) to every scorable reward, as a component."""
    if settings.overlong_cache is None:
        return list(groups)
    out = []
    for g in groups:
        scores = []
        for t, s in zip(g.trajectories, g.scores, strict=True):
            pen = soft_overlong_penalty(
                t.num_sampled, settings.max_sampled_tokens, settings.overlong_cache
            )
            value = None if s.value is None else s.value + pen
            scores.append(Score(value, {**s.components, "overlong": pen}, s.info))
        out.append(replace(g, scores=tuple(scores)))
    return out


def with_advantages(groups: Sequence[Group], scale: str) -> list[Group]:
    """The groups with `advantages` filled in for the kept ones (None where unscorable)."""
    kept = [g for g in groups if g.kept]
    if not kept:
        return list(groups)
    rewards_P_G = rewards_of(kept)
    adv_P_G = group_advantages(rewards_P_G, scale=scale)
    adv_of = {
        id(g): tuple(
            None if math.isnan(r) else float(a) for r, a in zip(r_G.tolist(), a_G.tolist())
        )
        for g, r_G, a_G in zip(kept, rewards_P_G, adv_P_G)
    }
    return [replace(g, advantages=adv_of[id(g)]) if g.kept else g for g in groups]


def informative(groups: Sequence[Group]) -> bool:
    """Whether any kept rollout has a non-zero advantage (otherwise the step has no gradient)."""
    return any(a not in (None, 0.0) for g in groups if g.kept for a in g.advantages or ())
