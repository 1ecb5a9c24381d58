"""The one translation from a run's configuration to the records each stage takes.

`RunConfig` is what a user writes; the stages take small frozen records instead, built here and
nowhere else: `LossConfig` (the loss), `StepSettings` (one optimizer phase), `CollectSettings`
(sampling a step's groups), `ShapingSettings` (rewards to advantages), `EvalSettings` (the
in-loop evaluations) and `JudgeConfig` (one judge's endpoint). A stage never reads `RunConfig`.

Units: `max_sampled_tokens` is the most tokens one episode can *sample* (`rollout.max_new_tokens`
per assistant turn times the turn limit); it is the L_max of the soft overlong punishment and of
Dr. GRPO's constant normaliser, both of which compare it with `Trajectory.num_sampled`. The
episode budget `env.max_tokens` counts prompt and environment tokens too and caps episodes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from burnish.algorithms import LOSSES, LossConfig
from burnish.config import JudgeEntry, RunConfig
from burnish.rollout import SamplingParams
from burnish.train.step import StepSettings


@dataclass(frozen=True)
class EpisodeBudget:
    """Episode limits the config sets (None: the environment's and the runner's own)."""

    max_turns: int | None = None
    max_tokens: int | None = None

    def kwargs(self) -> dict[str, int]:
        """The limits that are set, as keyword arguments of `run_episodes`."""
        limits = {"max_turns": self.max_turns, "max_tokens": self.max_tokens}
        return {k: v for k, v in limits.items() if v is not None}


@dataclass(frozen=True)
class CollectSettings:
    """How one step's groups are sampled."""

    prompts_per_step: int
    group_size: int
    concurrency: int
    sampling: SamplingParams
    """Sampling parameters; the seed is set per step and round (`burnish.seeds`)."""
    budget: EpisodeBudget
    dynamic_sampling: bool
    """Drop zero-variance groups and sample more (DAPO), at most `max_resample_rounds` times."""
    max_resample_rounds: int
    seed: int


@dataclass(frozen=True)
class ShapingSettings:
    """How rewards become advantages."""

    advantage_scale: str
    overlong_cache: int | None
    """Soft overlong punishment over the last `overlong_cache` sampled tokens (None: off)."""
    max_sampled_tokens: int
    mask_truncated: bool


@dataclass(frozen=True)
class EvalSettings:
    """The evaluations on the test split before, during and after training."""

    every: int
    n_tasks: int
    samples: int
    temperature: float
    seed: int
    max_new_tokens: int
    budget: EpisodeBudget


@dataclass(frozen=True)
class ForgettingSettings:
    """Forgetting, measured at every eval point: the retention skills' test pass rates, and the
    KL between the policy and its base on the new task's test prompts."""

    retention: tuple[str, ...]
    """Environment names of the other skills (their own turn limits and token budgets)."""
    retention_max_new_tokens: int
    kl_tasks: int
    kl_max_new_tokens: int
    """Tokens per turn of the KL samples (the run's own `rollout.max_new_tokens`)."""
    kl_budget: EpisodeBudget
    """The new task's episode limits (the run's)."""


@dataclass(frozen=True)
class DistillSettings:
    """On-policy distillation: the teacher's per-token reverse KL as (part of) the advantage."""

    coef: float
    """λ: advantages are (1 − λ)·Â_reward + λ·(log π_T − log π_θ)."""
    micro_batch_size: int


@dataclass(frozen=True)
class RunPlan:
    """Every stage's settings for one run."""

    collect: CollectSettings
    shaping: ShapingSettings
    loss: LossConfig
    step: StepSettings
    eval: EvalSettings
    forgetting: ForgettingSettings | None = None
    distill: DistillSettings | None = None
    """Set when the run has a `[teacher]` (on-policy distillation)."""

    @classmethod
    def from_config(cls, config: RunConfig, env: Any) -> RunPlan:
        """The plan of `config` for the run's environment (its turn limit sets the units)."""
        r, a, t, e = config.rollout, config.algorithm, config.train, config.eval
        variant = LOSSES[a.loss]  # what a field left as None means for this loss
        budget = EpisodeBudget(config.env.max_turns, config.env.max_tokens)
        max_sampled = max_sampled_tokens(r.max_new_tokens, config.env.max_turns, env)
        sampling = SamplingParams(
            max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p, top_k=r.top_k
        )
        return cls(
            collect=CollectSettings(
                prompts_per_step=r.prompts_per_step,
                group_size=r.group_size,
                concurrency=r.concurrency,
                sampling=sampling,
                budget=budget,
                dynamic_sampling=_or(a.dynamic_sampling, variant.dynamic_sampling),
                max_resample_rounds=a.max_resample_rounds,
                seed=t.seed,
            ),
            shaping=ShapingSettings(
                advantage_scale=_or(a.advantage_scale, variant.advantage_scale),
                overlong_cache=a.overlong_cache,
                max_sampled_tokens=max_sampled,
                mask_truncated=a.mask_truncated,
            ),
            loss=LossConfig(
                name=a.loss,
                eps_low=a.eps_low,
                eps_high=a.eps_high,
                kl_coef=a.kl_coef,
                kl_estimator=a.kl_estimator,
                kl_bias_correction=a.kl_bias_correction,
                aggregation=a.aggregation,
                max_completion_len=max_sampled,
                dual_clip=a.dual_clip,
                entropy_coef=a.entropy_coef,
                entropy_gate_quantile=a.entropy_gate_quantile,
                tis=a.tis,
                tis_cap=a.tis_cap,
            ),
            step=StepSettings(
                micro_batch_size=t.micro_batch_size,
                minibatches=t.minibatches,
                inner_epochs=t.inner_epochs,
                grad_clip=t.grad_clip,
                temperature=r.temperature or 1.0,
                shared_prefix=t.shared_prefix,
            ),
            eval=EvalSettings(
                every=e.every,
                n_tasks=e.n_tasks,
                samples=e.samples,
                temperature=e.temperature,
                seed=e.seed,
                max_new_tokens=r.max_new_tokens,
                budget=budget,
            ),
            forgetting=ForgettingSettings(
                retention=tuple(e.retention),
                retention_max_new_tokens=e.retention_max_new_tokens,
                kl_tasks=e.kl_tasks,
                kl_max_new_tokens=r.max_new_tokens,
                kl_budget=budget,
            ),
            distill=None
            if config.teacher is None
            else DistillSettings(coef=a.distill_coef, micro_batch_size=t.micro_batch_size),
        )


def _or(value, default):
    return default if value is None else value


def max_sampled_tokens(max_new_tokens: int, max_turns: int | None, env: Any) -> int:
    """The most tokens one episode can sample: `max_new_tokens` per turn times the turn limit
    (the configured one, else the environment's own `max_turns`, else 1)."""
    turns = max_turns if max_turns is not None else getattr(env, "max_turns", 1)
    return max_new_tokens * max(1, int(turns))


def judge_config(entry: JudgeEntry):
    """The endpoint settings of one `[[judges]]` entry."""
    from burnish.judges import JudgeConfig

    return JudgeConfig(
        base_url=entry.base_url,
        model=entry.model,
        api_key_env=entry.api_key_env,
        temperature=entry.temperature,
        timeout_s=entry.timeout,
        max_concurrency=entry.max_concurrency,
        requests_per_minute=entry.requests_per_minute,
        price_per_1k_prompt_tokens=entry.price_per_1k_tokens,
        price_per_1k_completion_tokens=entry.price_per_1k_tokens,
        max_response_bytes=entry.max_response_bytes,
        max_client_errors=entry.max_client_errors,
    )
