"""Build the pieces of a run from its configuration: policy, environments, scorers, optimizer.

Kept apart from `loop.py` so that the loop reads as the algorithm and nothing else.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from burnish.config import (
    EnvConfig,
    EnvScoreConfig,
    JudgeEntry,
    LoraConfig,
    ModelConfig,
    TrainConfig,
)
from burnish.envs import EnvMix, load_env
from burnish.models import attach_lora, load_model, set_threads
from burnish.models.frozen_base import lower_base_precision
from burnish.models.onednn_linear import route_base_matmuls
from burnish.scoring import EnvScorer, ScorerSpec
from burnish.train.plan import judge_config


def build_policy(m: ModelConfig, lora: LoraConfig, seed: int):
    """Load the base model and wrap it for training (LoRA, or full fine-tuning)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the run has its own progress display
    warnings.filterwarnings(
        "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
    )
    set_threads(m.threads)
    torch.manual_seed(seed)
    model, tokenizer = load_model(
        m.name,
        dtype=m.dtype,
        device=m.device,
        trust_remote_code=m.trust_remote_code,
        chat=m.chat(),
    )
    if lora.enabled:
        model = attach_lora(
            model,
            rank=lora.rank,
            alpha=lora.alpha,
            dropout=lora.dropout,
            target_modules=lora.target_modules,
        )
        if lora.base_dtype is not None:
            lower_base_precision(model, lora.base_dtype)
        route_base_matmuls(model, lora.base_matmul)
    else:
        for p in model.parameters():
            p.requires_grad_(True)
    model.train()
    return model, tokenizer


def build_env(config: EnvConfig) -> Any:
    """The run's environment: the configured one, or an `EnvMix` of the configured mixture."""
    entries = config.entries()
    envs = [load_env(e.name, **e.kwargs) for e in entries]
    if len(envs) == 1:
        return envs[0]
    return EnvMix(envs, [e.weight for e in entries])


def member_envs(env: Any) -> list[Any]:
    """The environments evaluated one by one: a mixture's members, or the environment itself."""
    return list(env.envs.values()) if isinstance(env, EnvMix) else [env]


def build_scorers(
    env: Any, env_score: EnvScoreConfig, judges: Sequence[JudgeEntry], run_dir: str
) -> list[ScorerSpec]:
    """The environment's programmatic score plus the configured judges (cached in `run_dir`)."""
    specs = [ScorerSpec(EnvScorer(env), weight=env_score.weight, role=env_score.role)]
    for entry in judges:
        specs.append(ScorerSpec(build_judge(entry, run_dir), entry.weight, entry.role))
    if not any(s.role == "reward" for s in specs):
        raise ValueError(
            "no scorer has role 'reward': set env_score.role = 'reward' or add a judge with "
            "role = 'reward'"
        )
    return specs


def build_judge(entry: JudgeEntry, run_dir: str):
    """The judge of a `[[judges]]` entry (its kind from `JUDGE_KINDS`); cached in the run
    directory."""
    from burnish.judges import JudgeCache, builtin_rubric, load_rubric
    from burnish.judges.kinds import JudgeSpec, build_judge_of

    rubric = None
    if entry.rubric is not None:
        is_file = entry.rubric.endswith(".toml") or Path(entry.rubric).exists()
        rubric = load_rubric(entry.rubric) if is_file else builtin_rubric(entry.rubric)
    spec = JudgeSpec(
        name=entry.name,
        kind=entry.kind,
        config=None if entry.members else judge_config(entry),
        rubric=rubric,
        cache=JudgeCache(Path(run_dir) / "judge_cache.db") if entry.cache else None,
        view=entry.view,
        members=tuple(build_judge(m, run_dir) for m in entry.members),
        aggregate=entry.aggregate,
        lam=entry.lam,
        min_members=entry.min_members,
    )
    return build_judge_of(spec)


def judge_metrics(scorers: Sequence[ScorerSpec]) -> dict[str, float]:
    """Judge calls, tokens, cost, unscorable and cache-hit rates since the last call, per judge."""
    out: dict[str, float] = {}
    for spec in scorers:
        judge = spec.scorer
        if not hasattr(judge, "metrics"):
            continue
        for k, v in judge.metrics().items():
            out[f"{k}/{judge.name}" if k.startswith("judge/") else k] = float(v)
        judge.reset_metrics()
    return out


def build_optimizer(t: TrainConfig, policy) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters and its LR schedule (warmup, then constant, linear
    or cosine decay).

    The fused AdamW kernel (one call per tensor instead of about ten ops; transformers' default
    optimizer too) where every parameter is a floating tensor on one CPU or CUDA device: at
    burnish-tiny's 56 LoRA tensors a step took 0.53 ms against 3.31 for the per-tensor loop.
    """
    params = [p for p in policy.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters")
    devices = {p.device for p in params}
    fused = (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.dtype.is_floating_point for p in params)
    )
    opt = torch.optim.AdamW(  # None, not False: torch then still picks foreach where it pays
        params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, fused=fused or None
    )

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
