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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from burnish import interrupts
from burnish.config import RunConfig, save_config
from burnish.models.threads import ThreadGovernor
from burnish.rollout import Sampler
from burnish.rollout.pack import pack
from burnish.scoring import ScorerSpec
from burnish.store import RunStore
from burnish.train.checkpoint import (
    TrainerState,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from burnish.train.engines import build_placement, build_sampler, close_placement, close_sampler
from burnish.train.evaluation import finish_run, run_eval
from burnish.train.export import export_weights
from burnish.train.forgetting import ForgettingProbe
from burnish.train.groups import TaskCursor, informative, shape_rewards, with_advantages
from burnish.train.guards import ScorableWatch, advisories, check_run_dir, loss_advice
from burnish.train.heap import steps_heap
from burnish.train.metrics import rollout_compute, step_metrics
from burnish.train.plan import RunPlan
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
from burnish.train.teacher import distill_batch, load_teacher
from burnish.types import Group

OnStep = Callable[[int, dict[str, float]], None]
log = logging.getLogger("burnish")


def train(
    config: RunConfig, *, resume: bool = False, on_step: OnStep | None = None
) -> dict[str, Any]:
    """Run RL training as configured; returns the summary also written to `summary.json`.

    `on_step(step, metrics)` is called after every step (progress displays, tests). An interrupt
    recorded by `burnish.interrupts` raises `KeyboardInterrupt` (the CLI says where to resume).
    """
    try:
        return asyncio.run(train_async(config, resume=resume, on_step=on_step))
    except asyncio.CancelledError:
        if interrupts.requested():  # the interrupt cancelled the run's main task
            raise KeyboardInterrupt from None
        raise


@dataclass
class Run:
    """The live pieces of one run, built once by `start_run`."""

    config: RunConfig
    plan: RunPlan
    run_dir: Path
    store: RunStore
    policy: Any
    tokenizer: Any
    eval_envs: list[Any]
    scorers: list[ScorerSpec]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: Sampler
    """Samples rollouts and in-loop evaluations (`burnish.train.engines`)."""
    tasks: TaskCursor
    monitor: RunMonitor
    sinks: list[Any]
    start: int = 0
    """The first step to run (after a resume: the checkpoint's step count)."""
    before: dict[str, Any] | None = None
    """Test metrics of the model before training."""
    probe: ForgettingProbe | None = None
    """Retention skills and KL to base, measured at every eval point."""
    teacher: Any | None = None
    """The on-policy distillation teacher (a `[teacher]` section), else None."""
    method: str = "rl"
    """What trains the policy: "rl", "opd" (on-policy distillation), "sft" or "distill"."""
    source: Any = None
    """Where a step's groups come from: this process, or Ray rollout workers (`[scale]`)."""
    trainer: Any = None
    """Who takes the optimizer step: this process, or data-parallel ranks (`[scale]`)."""
    started_ray: bool = False
    """Whether this run started the local Ray cluster it uses (and so shuts it down)."""
    threads: ThreadGovernor | None = None
    """Follows the cores other processes leave free (`model.adapt_threads`), else None."""


async def train_async(
    config: RunConfig, *, resume: bool = False, on_step: OnStep | None = None
) -> dict[str, Any]:
    """`train` for callers that already run an event loop."""
    t0 = time.time()
    with interrupts.watching(asyncio.current_task()):
        interrupts.check()  # one that start-up code lost (an import, a model load)
        run = start_run(config, resume)
        return await _run(run, on_step, t0)


async def _run(run: Run, on_step: OnStep | None, t0: float) -> dict[str, Any]:
    """Train a started run, then close what `start_run` opened (also on errors)."""
    config = run.config
    try:
        if config.teacher is not None:  # on-policy distillation
            run.teacher = load_teacher(config.teacher, config.model, run.tokenizer)
            run.method = "opd"
        return await _train(run, on_step, t0)
    finally:
        await close_sampler(run.sampler)
        await close_placement(run.source, run.trainer, run.started_ray)
        close_run(run)


async def _train(run: Run, on_step: OnStep | None, t0: float) -> dict[str, Any]:
    """The steps of a started run, then its final checkpoint, weights and summary."""
    await run.sampler.sync(run.policy)  # a server serves the policy as it starts (or resumes)
    await run.source.sync(run.policy, run.start)  # and so do Ray rollout workers
    run.trainer.start(run.policy, run.optimizer, run.scheduler)  # ranks 1.. copy rank 0
    if run.before is None:
        run.before = await run_eval(run, step=0)
    with steps_heap(run.config.model.keep_freed_memory):  # docs/performance.md §2
        saved = await _steps(run, on_step)
    return await end_run(run, saved, t0)


async def _steps(run: Run, on_step: OnStep | None) -> int:
    """The training steps; returns the step count of the last checkpoint written."""
    config = run.config
    watch, advised, saved = ScorableWatch(config.train.max_unscorable_steps), False, run.start
    for step in range(run.start, config.train.steps):
        interrupts.check()
        # fewer threads while other processes keep cores busy (`model.adapt_threads`)
        threads = run.threads.adjust() if run.threads is not None else None
        ts = time.time()
        groups, metrics = await rl_step(run, step)
        if threads is not None:
            metrics["threads"] = float(threads)
        if not advised and "loss/total" in metrics:  # settings that only the numbers reveal
            advised = True
            for advice in loss_advice(run.plan.loss, metrics):
                log.warning("%s", advice)
        report = await run.monitor.observe(step, groups, metrics)
        metrics.update(report.metrics)
        for a in report.alerts:  # to the console as they happen; also in the store and summary
            log.warning(
                "monitor alert at step %d: %s on %s: %s", step, a.rule, a.signal, a.evidence
            )
        metrics.update({"time/step": time.time() - ts, "lr": run.scheduler.get_last_lr()[0]})
        metrics.update(await due_evals(run, step))
        publish(run, step, metrics, on_step, groups, report.alerts, report.flagged)
        if report.stop or (step + 1) % config.train.checkpoint_every == 0 or report.checkpoint:
            saved = checkpoint(run, step + 1)
        if report.stop:
            break
        watch.observe(step, metrics)  # raises after too many steps with nothing scorable
    return saved


async def due_evals(run: Run, step: int) -> dict[str, float]:
    """`eval/<env>/<metric>` of the test evaluation after `step` when one is due (every
    `eval.every` steps, except after the last step: `finish_run` evaluates that one)."""
    every, after = run.plan.eval.every, step + 1
    if not every or after % every or after >= run.config.train.steps:
        return {}
    evals = await run_eval(run, after)
    return {
        f"eval/{env}/{k}": v
        for env, m in evals.items()
        for k, v in m.items()
        if isinstance(v, float)
    }


def publish(run: Run, step: int, metrics, on_step, groups=(), alerts=(), flagged=()) -> None:
    """One step's record to the store (one transaction), the sinks and the `on_step` callback."""
    run.store.log_step(step, metrics, groups, alerts, flagged)
    for sink in run.sinks:
        sink.log(step, metrics)
    if on_step is not None:
        on_step(step, metrics)


async def end_run(run: Run, saved: int, t0: float) -> dict[str, Any]:
    """After the last step: its checkpoint (unless `saved` already holds it), the trained
    weights in the run directory, the final evaluation and the summary."""
    last = run.store.last_step()
    done = 0 if last is None else last + 1
    if done and saved != done:
        checkpoint(run, done)
    export_weights(run.run_dir, run.policy, run.tokenizer)
    return await finish_run(run, t0)


def close_run(run: Run) -> None:
    """Close the store and the sinks (a failed run too: its store stays readable)."""
    run.store.close()
    for sink in run.sinks:
        sink.close()


async def rl_step(run: Run, step: int) -> tuple[list[Group], dict[str, float]]:
    """One RL step: sample and score groups, shape rewards, advantages, update, sync."""
    t0 = time.time()
    groups, metrics = await run.source.collect(step)  # in process, or Ray rollout workers
    t_sample = time.time() - t0
    groups = with_advantages(
        shape_rewards(groups, run.plan.shaping), run.plan.shaping.advantage_scale
    )
    metrics.update({**step_metrics(groups), **judge_metrics(run.scorers), "time/sample": t_sample})
    distilling = run.teacher is not None and any(g.kept for g in groups)
    metrics.update(rollout_compute(groups))
    if informative(groups) or distilling:
        batch = pack(
            groups,
            mask_truncated=run.plan.shaping.mask_truncated,
            pad_id=run.tokenizer.pad_token_id or 0,
        )
        if run.teacher is not None:  # per-token advantages from the teacher
            batch, distill_metrics = await distill_batch(run.teacher, batch, run.plan.distill)
            metrics.update(distill_metrics)
            metrics["compute/tokens"] += distill_metrics["distill/teacher_tokens"]
        metrics["compute/tokens"] += float(batch.lengths_B.sum()) * run.plan.step.inner_epochs
        metrics.update(
            run.trainer.train(run.policy, batch, run.plan.loss, run.optimizer, run.plan.step)
        )
        run.scheduler.step()
        await run.sampler.sync(run.policy)  # a server: write the adapter and load it
    else:  # nothing informative this step: no update
        metrics["train/skipped"] = 1.0
    await run.source.sync(run.policy, step + 1)  # Ray workers: queued behind what they sample
    return groups, metrics


def start_run(config: RunConfig, resume: bool) -> Run:
    """Open the run directory, build every piece, and restore the last checkpoint on resume."""
    run_dir = Path(config.log.run_dir)
    check_run_dir(run_dir, resume)
    for advice in advisories(config):
        log.warning("config: %s", advice)
    store = RunStore.open(run_dir / "run.db")
    if not resume and store.last_step() is not None:
        raise ValueError(
            f"{run_dir} already holds a run ({store.last_step() + 1} steps logged): continue it "
            "with --resume, or set another log.run_dir"
        )
    save_config(config, run_dir / "config.toml")
    policy, tokenizer = build_policy(config.model, config.lora, seed=config.train.seed)
    env = build_env(config.env)
    scorers = build_scorers(env, config.env_score, config.judges, config.log.run_dir)
    optimizer, scheduler = build_optimizer(config.train, policy)
    plan = RunPlan.from_config(config, env)
    run = Run(
        config=config,
        plan=plan,
        run_dir=run_dir,
        store=store,
        policy=policy,
        tokenizer=tokenizer,
        eval_envs=member_envs(env),
        scorers=scorers,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=build_sampler(config, policy, tokenizer, run_dir),
        tasks=TaskCursor(env, seed=config.train.seed),
        monitor=RunMonitor(config.monitors, scorers),
        sinks=build_sinks(config),
        probe=ForgettingProbe.build(plan.forgetting, policy),  # before any checkpoint loads
        threads=ThreadGovernor(torch.get_num_threads()) if config.model.adapt_threads else None,
    )
    checkpoints, cursor = (list_checkpoints(run_dir) if resume else []), {}
    if checkpoints:
        state = load_checkpoint(checkpoints[-1], policy)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
        cursor = state.cursor
        run.monitor.load_state_dict(state.monitor)
        set_rng_state(state.rng)
        run.start, run.before = state.step, state.extra.get("before")
    store.truncate_from(run.start)  # the checkpoint's step and later ones are run again
    run.source, run.trainer, run.started_ray = build_placement(
        config, plan.collect, run.tasks, run.sampler, tokenizer, scorers, run_dir
    )
    run.source.load_cursor(cursor)  # tasks drawn (and the slices Ray workers held)
    return run


def checkpoint(run: Run, steps_done: int) -> int:
    """Save the adapter and everything a resumed run needs, after `steps_done` steps; returns
    `steps_done`."""
    state = TrainerState(
        steps_done,
        run.optimizer.state_dict(),
        run.scheduler.state_dict(),
        rng_state(),
        run.source.cursor(),
        run.monitor.state_dict(),
        {"before": run.before},
    )
    save_checkpoint(run.run_dir, run.policy, state, keep=run.config.train.keep_checkpoints)
    return steps_done
