"""The RL loop of burnish, top to bottom.

One step: draw tasks -> run `group_size` episodes per task -> score them -> [dynamic sampling:
drop zero-variance groups, top the batch up] -> shape rewards -> group advantages -> pack ->
optimizer step(s) -> sync the sampler -> monitors observe -> log -> [eval] -> [checkpoint].
One `Group` record per task carries scores, held-out scores, the kept flag and advantages
through the step (`burnish.train.groups`); the stages take the records of `burnish.train.plan`.

The run is async from the top: `train` runs one event loop for the whole run, and sampling,
judging, probes and evaluations all await in it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from burnish.config import RunConfig, save_config
from burnish.eval import evaluate_async
from burnish.rollout import LocalSampler
from burnish.rollout.pack import pack
from burnish.store import RunStore
from burnish.train.checkpoint import (
    TrainerState,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from burnish.train.groups import (
    TaskCursor,
    collect_groups,
    informative,
    shape_rewards,
    with_advantages,
)
from burnish.train.metrics import step_metrics
from burnish.train.plan import EvalSettings, RunPlan
from burnish.train.run_monitor import RunMonitor
from burnish.train.setup import (
    build_env,
    build_optimizer,
    build_policy,
    build_scorers,
    judge_metrics,
    member_envs,
)
from burnish.train.sinks import build_sinks
from burnish.train.step import train_on_batch

OnStep = Callable[[int, dict[str, float]], None]
log = logging.getLogger("burnish")


async def run_eval(
    settings: EvalSettings, policy, tokenizer, envs, store: RunStore, step: int
) -> dict[str, Any]:
    """Evaluate on every environment's test split; log and return {env: metrics}."""
    out = {}
    for env in envs:
        res = await evaluate_async(
            policy,
            tokenizer,
            env,
            samples=settings.samples,
            n_tasks=settings.n_tasks,
            split="test",
            temperature=settings.temperature,
            seed=settings.seed,
            max_new_tokens=settings.max_new_tokens,
            **settings.budget.kwargs(),
        )
        metrics = res.to_dict()
        store.log_eval(step, env.name, metrics)
        out[env.name] = metrics
    return out


def train(
    config: RunConfig, *, resume: bool = False, on_step: OnStep | None = None
) -> dict[str, Any]:
    """Run RL training as configured; returns the summary also written to `summary.json`.

    `on_step(step, metrics)` is called after every step (progress displays, tests).
    """
    return asyncio.run(train_async(config, resume=resume, on_step=on_step))


async def train_async(
    config: RunConfig, *, resume: bool = False, on_step: OnStep | None = None
) -> dict[str, Any]:
    """`train` for callers that already run an event loop."""
    t0 = time.time()
    run_dir = Path(config.log.run_dir)
    store = RunStore.open(run_dir / "run.db")
    if not resume and store.last_step() is not None:
        raise ValueError(
            f"{run_dir} already holds a run ({store.last_step() + 1} steps logged): continue it "
            "with --resume, or set another log.run_dir"
        )
    save_config(config, run_dir / "config.toml")

    policy, tokenizer = build_policy(config.model, config.lora, seed=config.train.seed)
    env = build_env(config)
    plan = RunPlan.from_config(config, env)
    scorers = build_scorers(config, env)
    optimizer, scheduler = build_optimizer(config.train, policy)
    sampler = LocalSampler(policy, tokenizer)
    tasks = TaskCursor(env, seed=config.train.seed)
    monitor = RunMonitor(config.monitors, scorers)
    sinks = build_sinks(config)
    eval_envs = member_envs(env)

    start, before = 0, None
    checkpoints = list_checkpoints(run_dir) if resume else []
    if checkpoints:
        state = load_checkpoint(checkpoints[-1], policy)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        tasks.drawn = int(state.cursor.get("tasks", 0))
        monitor.load_state_dict(state.monitor)
        set_rng_state(state.rng)
        start, before = state.step, state.extra.get("before")
    store.truncate_after(start if checkpoints else -1)  # steps after the checkpoint are re-run
    if before is None:
        before = await run_eval(plan.eval, policy, tokenizer, eval_envs, store, step=0)

    for step in range(start, config.train.steps):
        ts = time.time()
        groups, sampling = await collect_groups(
            plan.collect, tasks, sampler, tokenizer, scorers, step
        )
        t_sample = time.time() - ts
        groups = with_advantages(shape_rewards(groups, plan.shaping), plan.shaping.advantage_scale)
        metrics = {**sampling, **step_metrics(groups), **judge_metrics(scorers)}
        if informative(groups):
            batch = pack(
                groups,
                mask_truncated=plan.shaping.mask_truncated,
                pad_id=tokenizer.pad_token_id or 0,
            )
            metrics.update(train_on_batch(policy, batch, plan.loss, optimizer, plan.step))
            scheduler.step()
        else:  # nothing informative this step: no update
            metrics["train/skipped"] = 1.0
        await sampler.sync(policy)
        report = await monitor.observe(step, groups, metrics)
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
        every = plan.eval.every
        if every and (step + 1) % every == 0 and step + 1 < config.train.steps:
            evals = await run_eval(plan.eval, policy, tokenizer, eval_envs, store, step + 1)
            for env_name, m in evals.items():
                metrics.update(
                    {f"eval/{env_name}/{k}": v for k, v in m.items() if isinstance(v, float)}
                )
        store.log_step(step, metrics, groups, report.alerts, report.flagged)
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
                {"tasks": tasks.drawn},
                monitor.state_dict(),
                {"before": before},
            )
            save_checkpoint(run_dir, policy, state, keep=config.train.keep_checkpoints)
        if report.stop:
            break

    last = (store.last_step() or 0) + 1
    after = await run_eval(plan.eval, policy, tokenizer, eval_envs, store, step=last)
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
