"""The RL loop of burnish, top to bottom.

One step: draw tasks -> run `group_size` episodes per task -> score them -> monitors observe ->
[dynamic sampling: drop zero-variance groups, top the batch up] -> group advantages -> pack ->
optimizer step(s) -> sync the sampler -> log -> [eval] -> [checkpoint].

How it departs from the papers:
- rewards of unscorable rollouts (a judge failed) are None; those rollouts take no part in the
  group statistics and get no gradient (never a reward of 0);
- dynamic sampling (DAPO) filters on the total reward's group std and tops up with at most
  `max_resample_rounds` extra rounds; if the batch is still short it trains on what it has;
- the soft overlong punishment is added to the reward after the dynamic-sampling filter decided,
  so a length penalty alone never makes a group look informative.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from burnish.algorithms import group_advantages, keep_informative_groups, soft_overlong_penalty
from burnish.config import RunConfig, save_config
from burnish.eval import evaluate
from burnish.rollout import LocalSampler, SamplingParams
from burnish.rollout.episode import run_episodes
from burnish.rollout.pack import pack
from burnish.scoring import score_group
from burnish.store import RunStore
from burnish.train.checkpoint import (
    TrainerState,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from burnish.train.metrics import step_metrics
from burnish.train.run_monitor import RunMonitor
from burnish.train.setup import (
    TaskStream,
    build_envs,
    build_optimizer,
    build_policy,
    build_scorers,
    judge_metrics,
    loss_config,
)
from burnish.train.sinks import build_sinks
from burnish.train.step import StepSettings, train_on_batch
from burnish.types import Group, Score

OnStep = Callable[[int, dict[str, float]], None]
log = logging.getLogger("burnish")


async def collect_groups(
    config: RunConfig, stream: TaskStream, sampler, tokenizer, scorers, step: int
):
    """Sample and score the groups of one step, with DAPO dynamic sampling when enabled.

    Returns every group seen (the monitors look at all of them), their held-out scores, the
    indices of the groups kept for training, and sampling metrics.
    """
    r, a = config.rollout, config.algorithm
    dynamic = a.resolved_dynamic_sampling()
    seen: list[Group] = []
    heldout: list[dict[str, list[float | None]]] = []
    kept: list[int] = []
    rounds = 1 + (a.max_resample_rounds if dynamic else 0)
    for round_ in range(rounds):
        draws = stream.draw(r.prompts_per_step - len(kept), step, round_)
        params = SamplingParams(
            max_new_tokens=r.max_new_tokens,
            temperature=r.temperature,
            top_p=r.top_p,
            top_k=r.top_k,
            seed=config.train.seed * 1_000_003 + step * 101 + round_,
        )
        envs = [env for env, task in draws for _ in range(r.group_size)]
        tasks = [task for env, task in draws for _ in range(r.group_size)]
        trajs = await run_episodes(
            envs,
            tasks,
            sampler,
            tokenizer,
            params,
            concurrency=r.concurrency,
            **_budget(config),
        )
        if trajs and all(t.error is not None for t in trajs):
            raise RuntimeError(
                f"every episode of step {step} failed in its environment; the first error: "
                f"{trajs[0].error}"
            )
        for i, (env, task) in enumerate(draws):
            group_trajs = tuple(trajs[i * r.group_size : (i + 1) * r.group_size])
            gs = await score_group(scorers[env.name], task, group_trajs)
            group = Group(task=task, trajectories=group_trajs, scores=tuple(gs.scores))
            if not dynamic or bool(keep_informative_groups(_rewards([group]))[0]):
                kept.append(len(seen))
            seen.append(group)
            heldout.append(gs.heldout)
        if len(kept) >= r.prompts_per_step:
            break
    stats = {
        "sampling/rounds": float(round_ + 1),
        "sampling/groups_seen": float(len(seen)),
        "sampling/groups_kept": float(len(kept)),
    }
    return seen, heldout, kept, stats


def _budget(config: RunConfig) -> dict[str, int]:
    """Episode limits the config sets (the rest are the environment's and the runner's own)."""
    limits = {"max_turns": config.env.max_turns, "max_tokens": config.env.max_tokens}
    return {k: v for k, v in limits.items() if v is not None}


def _rewards(groups: list[Group]) -> torch.Tensor:
    """[P, G] rewards, NaN for unscorable rollouts."""
    return torch.tensor(
        [[math.nan if v is None else v for v in g.rewards] for g in groups], dtype=torch.float64
    )


def shape_rewards(config: RunConfig, groups: list[Group]) -> list[Group]:
    """Add the soft overlong punishment (DAPO) to every scorable reward, as a component."""
    cache = config.algorithm.overlong_cache
    if cache is None:
        return groups
    max_len = config.env.max_tokens or config.rollout.max_new_tokens
    out = []
    for g in groups:
        scores = []
        for t, s in zip(g.trajectories, g.scores):
            pen = soft_overlong_penalty(t.num_sampled, max_len, cache)
            value = None if s.value is None else s.value + pen
            scores.append(Score(value, {**s.components, "overlong": pen}, s.info))
        out.append(Group(task=g.task, trajectories=g.trajectories, scores=tuple(scores)))
    return out


def advantages_of(config: RunConfig, groups: list[Group]) -> list[list[float | None]]:
    rewards_P_G = _rewards(groups)
    adv_P_G = group_advantages(rewards_P_G, scale=config.algorithm.resolved_scale())
    return [
        [None if math.isnan(r) else float(a) for r, a in zip(r_G.tolist(), a_G.tolist())]
        for r_G, a_G in zip(rewards_P_G, adv_P_G)
    ]


def run_eval(
    config: RunConfig, policy, tokenizer, envs, store: RunStore, step: int
) -> dict[str, Any]:
    """Evaluate on every environment's test split; log and return {env: metrics}."""
    e = config.eval
    out = {}
    for env, _ in envs:
        res = evaluate(
            policy,
            tokenizer,
            env,
            samples=e.samples,
            n_tasks=e.n_tasks,
            split="test",
            temperature=e.temperature,
            seed=e.seed,
            max_new_tokens=config.rollout.max_new_tokens,
            **_budget(config),
        )
        metrics = res.to_dict()
        store.log_eval(step, env.name, metrics)
        out[env.name] = metrics
    return out


def train(
    config: RunConfig, *, resume: bool = False, on_step: OnStep | None = None
) -> dict[str, Any]:
    """Run RL training as configured; returns the summary also written to `summary.json`."""
    t0 = time.time()
    run_dir = Path(config.log.run_dir)
    store = RunStore.open(run_dir / "run.db")
    if not resume and store.last_step() is not None:
        raise ValueError(
            f"{run_dir} already holds a run ({store.last_step() + 1} steps logged): continue it "
            "with --resume, or set another log.run_dir"
        )
    save_config(config, run_dir / "config.toml")

    policy, tokenizer = build_policy(config)
    envs = build_envs(config)
    scorers = {env.name: build_scorers(config, env) for env, _ in envs}
    optimizer, scheduler = build_optimizer(config, policy)
    sampler = LocalSampler(policy, tokenizer)
    stream = TaskStream(envs, seed=config.train.seed)
    monitor = RunMonitor(config, scorers)
    lcfg = loss_config(config)
    settings = StepSettings(
        micro_batch_size=config.train.micro_batch_size,
        minibatches=config.train.minibatches,
        inner_epochs=config.train.inner_epochs,
        grad_clip=config.train.grad_clip,
        temperature=config.rollout.temperature or 1.0,
    )
    sinks = build_sinks(config)

    start, before = 0, None
    checkpoints = list_checkpoints(run_dir) if resume else []
    if checkpoints:
        state = load_checkpoint(checkpoints[-1], policy)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        stream.cursor = dict(state.cursor)
        monitor.load_state_dict(state.monitor)
        set_rng_state(state.rng)
        start, before = state.step, state.extra.get("before")
    store.truncate_after(start if checkpoints else -1)  # steps after the checkpoint are re-run
    if before is None:
        before = run_eval(config, policy, tokenizer, envs, store, step=0)

    for step in range(start, config.train.steps):
        ts = time.time()
        seen, heldout, kept, sampling = asyncio.run(
            collect_groups(config, stream, sampler, tokenizer, scorers, step)
        )
        t_sample = time.time() - ts
        seen = shape_rewards(config, seen)
        groups = [seen[i] for i in kept]
        metrics = {**sampling, **step_metrics(seen), **judge_metrics(scorers)}
        advantages = advantages_of(config, groups) if groups else []
        if any(a not in (None, 0.0) for row in advantages for a in row):
            batch = pack(
                groups,
                advantages,
                mask_truncated=config.algorithm.mask_truncated,
                pad_id=tokenizer.pad_token_id or 0,
            )
            metrics.update(train_on_batch(policy, batch, lcfg, optimizer, settings))
            scheduler.step()
        else:  # nothing informative this step: no update
            metrics["train/skipped"] = 1.0
        asyncio.run(sampler.sync(policy))
        report = monitor.observe(step, seen, heldout, metrics)
        metrics.update(report.metrics)
        for a in report.alerts:  # to the console as they happen; also in the store and summary
            log.warning(
                "monitor alert at step %d: %s on %s: %s", step, a.rule, a.signal, a.evidence
            )
        metrics.update(
            {
                "time/sample": t_sample,
                "time/step": time.time() - ts,
                "lr": scheduler.get_last_lr()[0],
            }
        )
        if (
            config.eval.every
            and (step + 1) % config.eval.every == 0
            and step + 1 < config.train.steps
        ):
            for env_name, m in run_eval(config, policy, tokenizer, envs, store, step + 1).items():
                metrics.update(
                    {f"eval/{env_name}/{k}": v for k, v in m.items() if isinstance(v, float)}
                )
        adv_by_seen = dict(zip(kept, advantages))
        adv_seen = [adv_by_seen.get(i, [None] * len(g.trajectories)) for i, g in enumerate(seen)]
        store.log_step(step, metrics, seen, adv_seen, report.alerts, report.flagged)
        for sink in sinks:
            sink.log(step, metrics)
        if on_step is not None:
            on_step(step, metrics)
        if report.stop or (step + 1) % config.train.checkpoint_every == 0 or report.checkpoint:
            state = TrainerState(
                step + 1,
                optimizer.state_dict(),
                scheduler.state_dict(),
                rng_state(),
                dict(stream.cursor),
                monitor.state_dict(),
                {"before": before},
            )
            save_checkpoint(run_dir, policy, state, keep=config.train.keep_checkpoints)
        if report.stop:
            break

    after = run_eval(config, policy, tokenizer, envs, store, step=(store.last_step() or 0) + 1)
    summary = {
        "run_dir": str(run_dir),
        "steps": len(store.steps()),
        "wall_seconds": round(time.time() - t0, 2),
        "before": _headline(before),
        "after": _headline(after),
        "per_env": {"before": before, "after": after},
        "alerts": [
            {"rule": a["rule"], "step": a["step"], "signal": a["signal"], "evidence": a["evidence"]}
            for a in store.alerts()
        ],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    store.close()
    for sink in sinks:
        sink.close()
    return summary


def _headline(per_env: dict[str, dict[str, Any]]) -> dict[str, float]:
    """pass@1 and mean reward averaged over environments (equal weight)."""
    keys = ("pass@1", "mean_reward")
    return {k: sum(m[k] for m in per_env.values()) / len(per_env) for k in keys}
