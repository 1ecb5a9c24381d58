"""Distillation by rejection sampling (`burnish distill`): teacher samples -> filter -> SFT.

1. The teacher (`[teacher]`: a local model with an optional adapter, or an OpenAI-compatible
   endpoint) plays `samples_per_task` episodes on each of the first `n_tasks` train tasks.
2. A filter keeps what passes: the environment's verifier (score = `max_reward`), the reward
   judges of `[[judges]]` (each judge's own score ≥ `min_judge_score`; a judge that failed,
   Score(None), never passes), both, or nothing is filtered.
3. The student is trained with SFT (`burnish.train.sft`) on the kept transcripts.

The data set is kept in the run directory as `distill_data.jsonl` (one {"messages", "task_id",
"reward"} object per kept sample), and `summary.json` gains a "teacher" record: samples, tokens
sampled, pass rate, wall seconds, and cost when `price_per_1k_tokens` is set. The teacher's
samples and tokens are added to the run's compute.
"""

from __future__ import annotations

import asyncio
import json
import time
from itertools import islice
from pathlib import Path
from typing import Any

from burnish.config import RunConfig, SftConfig
from burnish.rollout.base import SamplingParams
from burnish.rollout.episode import run_episodes
from burnish.scoring import EnvScorer, ScorerSpec
from burnish.train.setup import build_env, build_scorers
from burnish.train.sft import sft_async
from burnish.train.teacher import local_teacher, served_teacher
from burnish.types import Message, Task, Trajectory

DATA_FILE = "distill_data.jsonl"


def distill(config: RunConfig) -> dict[str, Any]:
    """Sample the teacher, filter, train the student; returns the summary."""
    return asyncio.run(distill_async(config))


def _teacher_sampler(config: RunConfig):
    """What samples the teacher's answers, and the teacher's tokenizer (None when served)."""
    if config.teacher.base_url is not None:
        return served_teacher(config.teacher), None
    from burnish.models import set_threads
    from burnish.rollout import LocalSampler

    set_threads(config.model.threads)
    model, tokenizer = local_teacher(config.teacher, config.model)
    return LocalSampler(model, tokenizer, seed=config.train.seed), tokenizer


def _judge_specs(scorers: list[ScorerSpec], mode: str) -> list[ScorerSpec]:
    """The reward judges a "judge" or "both" filter asks (none for the other filters)."""
    if mode not in ("judge", "both"):
        return []
    judges = [s for s in scorers if s.role == "reward" and not isinstance(s.scorer, EnvScorer)]
    if not judges:
        raise ValueError(
            f'teacher.filter = "{mode}" needs at least one [[judges]] entry with role "reward"; '
            'add one or set teacher.filter to "verifier" or "none"'
        )
    return judges


async def _judge_passes(
    judges: list[ScorerSpec], task: Task, trajs: list[Trajectory], min_score: float
) -> list[bool]:
    """Per sample: every reward judge scored it at least `min_score` (a judge failure, Score(None),
    never passes)."""
    if not judges:
        return [False] * len(trajs)
    results = await asyncio.gather(*(s.scorer.score_group(task, trajs) for s in judges))
    return [
        all(r[j].value is not None and r[j].value >= min_score for r in results)
        for j in range(len(trajs))
    ]


async def _kept(
    env: Any, tasks: list[Task], trajs: list[Trajectory], judges: list[ScorerSpec], t: Any
) -> list[dict]:
    """The samples that pass `t.filter`, as JSON-ready records (errored episodes never pass)."""
    kept, k = [], t.samples_per_task
    max_reward = float(getattr(env, "max_reward", 1.0))
    for i, task in enumerate(tasks):
        group = trajs[i * k : (i + 1) * k]
        judged = await _judge_passes(judges, task, group, t.min_judge_score)
        for traj, judge in zip(group, judged):
            if traj.error is not None:
                continue
            value = env.score(task, traj).value  # the environment's own verifier
            verified = value is not None and abs(value - max_reward) <= 1e-9
            passes = {"verifier": verified, "judge": judge, "both": verified and judge}
            if passes.get(t.filter, True):
                kept.append(
                    {
                        "messages": [{"role": m.role, "content": m.content} for m in traj.messages],
                        "task_id": task.id,
                        "reward": value,
                    }
                )
    return kept


async def sample_teacher(config: RunConfig, tokenizer: Any) -> tuple[list[dict], dict[str, Any]]:
    """The teacher's filtered samples (JSON-ready records) and its cost record."""
    t = config.teacher
    if t is None:
        raise ValueError("burnish distill needs a [teacher] section")
    t0 = time.time()
    env = build_env(config.env)
    judges = _judge_specs(
        build_scorers(env, config.env_score, config.judges, config.log.run_dir), t.filter
    )
    sampler, teacher_tok = _teacher_sampler(config)
    tasks = list(islice(env.tasks("train", config.train.seed), t.n_tasks))
    params = SamplingParams(
        max_new_tokens=t.max_new_tokens or config.rollout.max_new_tokens,
        temperature=t.temperature,
        seed=config.train.seed,
    )
    repeated = [task for task in tasks for _ in range(t.samples_per_task)]
    budget = {
        k: v
        for k, v in (("max_turns", config.env.max_turns), ("max_tokens", config.env.max_tokens))
        if v
    }
    trajs = await run_episodes(
        env, repeated, sampler, teacher_tok or tokenizer, params, concurrency=t.concurrency,
        **budget,
    )  # fmt: skip
    kept = await _kept(env, tasks, trajs, judges, t)
    tokens = sum(tr.num_sampled for tr in trajs)
    cost = {
        "samples": len(trajs),
        "tokens": tokens,
        "kept": len(kept),
        "pass_rate": len(kept) / max(len(trajs), 1),
        "wall_seconds": round(time.time() - t0, 2),
        "cost": None if t.price_per_1k_tokens is None else tokens / 1000 * t.price_per_1k_tokens,
    }
    return kept, cost


async def distill_async(config: RunConfig) -> dict[str, Any]:
    """`distill` for callers that already run an event loop."""
    from burnish.models import load_model

    _, tokenizer = load_model(config.model.name)
    kept, cost = await sample_teacher(config, tokenizer)
    if not kept:
        raise ValueError(f"no teacher sample passed the {config.teacher.filter!r} filter")
    run_dir = Path(config.log.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DATA_FILE).write_text("".join(json.dumps(r) + "\n" for r in kept))
    transcripts = [[Message(m["role"], m["content"]) for m in r["messages"]] for r in kept]
    sft_config = (config.sft or SftConfig()).model_copy(update={"data": "teacher"})
    summary = await sft_async(
        config.model_copy(update={"sft": sft_config}), transcripts=transcripts, method="distill"
    )
    summary["teacher"] = cost
    summary["compute"] = {
        "samples": summary["compute"]["samples"] + cost["samples"],
        "tokens": summary["compute"]["tokens"] + cost["tokens"],
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
