"""Build the pieces of a run from its configuration: policy, environments, scorers, optimizer.

Kept apart from `loop.py` so that the loop reads as the algorithm and nothing else.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from burnish.algorithms import LossConfig
from burnish.config import JudgeEntry, RunConfig
from burnish.envs import load_env
from burnish.models import attach_lora, load_model, set_threads
from burnish.scoring import EnvScorer, ScorerSpec
from burnish.types import Task


def build_policy(config: RunConfig):
    """Load the base model and wrap it for training (LoRA, or full fine-tuning)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the run has its own progress display
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    set_threads(config.model.threads)
    torch.manual_seed(config.train.seed)
    model, tokenizer = load_model(
        config.model.name,
        dtype=config.model.dtype,
        device=config.model.device,
        trust_remote_code=config.model.trust_remote_code,
    )
    if config.lora.enabled:
        model = attach_lora(
            model,
            rank=config.lora.rank,
            alpha=config.lora.alpha,
            dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
        )
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    return model, tokenizer


def build_envs(config: RunConfig) -> list[tuple[Any, float]]:
    """The run's environments with their mixture weights."""
    return [(load_env(e.name, **e.kwargs), e.weight) for e in config.env.entries()]


def loss_config(config: RunConfig) -> LossConfig:
    a = config.algorithm
    return LossConfig(
        name=a.loss,
        eps_low=a.eps_low,
        eps_high=a.eps_high,
        kl_coef=a.kl_coef,
        kl_estimator=a.kl_estimator,
        aggregation=a.aggregation,
        max_completion_len=config.env.max_tokens or config.rollout.max_new_tokens,
        dual_clip=a.dual_clip,
        entropy_coef=a.entropy_coef,
        entropy_gate_quantile=a.entropy_gate_quantile,
    )


def build_scorers(config: RunConfig, env) -> list[ScorerSpec]:
    """The environment's programmatic score plus the configured judges."""
    specs = [ScorerSpec(EnvScorer(env), weight=config.env_score.weight, role=config.env_score.role)]
    for entry in config.judges:
        specs.append(ScorerSpec(build_judge(entry, config.log.run_dir), entry.weight, entry.role))
    if not any(s.role == "reward" for s in specs):
        raise ValueError(
            "no scorer has role 'reward': set env_score.role = 'reward' or add a judge with "
            "role = 'reward'"
        )
    return specs


def build_judge(entry: JudgeEntry, run_dir: str):
    """A RubricJudge or GroupJudge from a `[[judges]]` entry; cached in the run directory."""
    from burnish.judges import (
        GroupJudge,
        JudgeCache,
        JudgeConfig,
        RubricJudge,
        builtin_rubric,
        load_rubric,
    )

    rubric = None
    if entry.rubric is not None:
        is_file = entry.rubric.endswith(".toml") or Path(entry.rubric).exists()
        rubric = load_rubric(entry.rubric) if is_file else builtin_rubric(entry.rubric)
    jc = JudgeConfig(
        base_url=entry.base_url,
        model=entry.model,
        api_key_env=entry.api_key_env,
        temperature=entry.temperature,
        timeout_s=entry.timeout,
        max_concurrency=entry.max_concurrency,
        requests_per_minute=entry.requests_per_minute,
        price_per_1k_prompt_tokens=entry.price_per_1k_tokens,
        price_per_1k_completion_tokens=entry.price_per_1k_tokens,
    )
    cache = JudgeCache(Path(run_dir) / "judge_cache.db") if entry.cache else None
    if entry.kind == "rubric":
        if rubric is None:
            raise ValueError(
                f"judge {entry.name!r}: a rubric judge needs `rubric` (a TOML path or built-in name)"
            )
        return RubricJudge(rubric, jc, cache=cache, name=entry.name, view=entry.view, seed=0)
    return GroupJudge(jc, rubric=rubric, cache=cache, name=entry.name, view=entry.view, seed=0)


def judge_metrics(scorers: dict[str, list[ScorerSpec]]) -> dict[str, float]:
    """Judge calls, tokens, cost, unscorable and cache-hit rates since the last call, per judge."""
    out: dict[str, float] = {}
    seen = set()
    for specs in scorers.values():
        for spec in specs:
            judge = spec.scorer
            if id(judge) in seen or not hasattr(judge, "metrics"):
                continue
            seen.add(id(judge))
            for k, v in judge.metrics().items():
                out[f"{k}/{judge.name}" if k.startswith("judge/") else k] = float(v)
            judge.reset_metrics()
    return out


def build_optimizer(config: RunConfig, policy) -> tuple[torch.optim.Optimizer, Any]:
    t = config.train
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / (t.warmup_steps + 1)
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        return {
            "constant": 1.0,
            "linear": 1.0 - progress,
            "cosine": 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))),
        }[t.schedule]

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass
class TaskStream:
    """Training tasks drawn from a weighted mixture of environments, resumable by a cursor.

    The environment of each draw comes from an RNG seeded by (seed, step, round), so the draws of
    a step do not depend on anything but the step; the cursor counts the tasks each environment's
    stream has yielded, so a resumed run continues where it left off.
    """

    envs: list[tuple[Any, float]]
    seed: int
    cursor: dict[str, int] = field(default_factory=dict)
    _iters: dict[str, Iterator[Task]] = field(default_factory=dict, repr=False)

    def _next(self, env) -> Task:
        name = env.name
        if name not in self._iters:
            it = iter(env.tasks("train", self.seed))
            for _ in range(self.cursor.get(name, 0)):
                next(it)
            self._iters[name] = it
        try:
            task = next(self._iters[name])
        except StopIteration:  # a finite split: start it over
            self._iters[name] = iter(env.tasks("train", self.seed))
            task = next(self._iters[name])
        self.cursor[name] = self.cursor.get(name, 0) + 1
        return task

    def draw(self, n: int, step: int, round_: int) -> list[tuple[Any, Task]]:
        rng = random.Random(f"{self.seed}-{step}-{round_}")
        envs = [e for e, _ in self.envs]
        weights = [w for _, w in self.envs]
        picks = rng.choices(envs, weights=weights, k=n)
        return [(env, self._next(env)) for env in picks]
