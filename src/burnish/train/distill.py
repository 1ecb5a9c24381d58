"""Distillation by rejection sampling (`burnish distill`): teacher samples -> filter -> SFT.

1. The teacher (`[teacher]`: a local model with an optional adapter, or an OpenAI-compatible
   endpoint) plays `samples_per_task` episodes on each of the first `n_tasks` train tasks.
2. A filter keeps what passes: the environment's verifier (score = `max_reward`), the reward
   judges of `[[judges]]` (each score ≥ `min_judge_score`), both, or nothing is filtered.
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
from burnish.scoring import score_group
from burnish.train.setup import build_env, build_scorers
from burnish.train.sft import sft_async
from burnish.types import Message

DATA_FILE = "distill_data.jsonl"


def distill(config: RunConfig) -> dict[str, Any]:
    """Sample the teacher, filter, train the student; returns the summary."""
    return asyncio.run(distill_async(config))


def _teacher_sampler(config: RunConfig):
    t = config.teacher
    if t.base_url is not None:
        from burnish.rollout.openai_sampler import OpenAISampler

        return OpenAISampler(
            t.base_url, t.served_model, t.api_key_env, max_concurrency=t.concurrency
        ), None
    from burnish.models import load_model, set_threads
    from burnish.models.lora import load_adapter
    from burnish.rollout import LocalSampler

    set_threads(config.model.threads)
    model, tokenizer = load_model(
        t.model or config.model.name, dtype=config.model.dtype, device=config.model.device
    )
    if t.adapter is not None:
        model = load_adapter(model, t.adapter)
    return LocalSampler(model.eval(), tokenizer, seed=config.train.seed), tokenizer


async def sample_teacher(config: RunConfig, tokenizer: Any) -> tuple[list[dict], dict[str, Any]]:
    """The teacher's filtered samples (JSON-ready records) and its cost record."""
    t = config.teacher
    if t is None:
        raise ValueError("burnish distill needs a [teacher] section")
    t0 = time.time()
    sampler, teacher_tok = _teacher_sampler(config)
    tok = teacher_tok or tokenizer
    env = build_env(config.env)
    run_dir = config.log.run_dir
    scorers = build_scorers(env, config.env_score, config.judges, run_dir)
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
        env, repeated, sampler, tok, params, concurrency=t.concurrency, **budget
    )
    kept, k = [], t.samples_per_task
    max_reward = float(getattr(env, "max_reward", 1.0))
    judged = t.filter in ("judge", "both")
    for i, task in enumerate(tasks):
        group_trajs = trajs[i * k : (i + 1) * k]
        scores = (await score_group(scorers, task, group_trajs)).scores if judged else None
        for j, traj in enumerate(group_trajs):
            if traj.error is not None:
                continue
            value = env.score(task, traj).value  # the environment's own verifier
            verified = value is not None and abs(value - max_reward) <= 1e-9
            judge = scores is not None and (scores[j].value or 0.0) >= t.min_judge_score
            if {"verifier": verified, "judge": judge, "both": verified and judge}.get(
                t.filter, True
            ):
                kept.append(
                    {
                        "messages": [{"role": m.role, "content": m.content} for m in traj.messages],
                        "task_id": task.id,
                        "reward": value,
                    }
                )
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
