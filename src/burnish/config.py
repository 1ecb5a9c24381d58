"""The configuration of a run: typed, grouped, documented once.

A run is described by a TOML file whose tables match the models below (`[model]`, `[lora]`,
`[env]`, `[algorithm]`, `[rollout]`, `[sampler]`, `[scale]`, `[train]`, `[eval]`, `[log]`, `[[judges]]`,
`[monitors]`). `--set a.b=c` overrides any field. The resolved configuration is saved as
`config.toml` in the run directory. A bad file or field raises `ConfigError` naming the field,
the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from burnish.config_engines import SamplerConfig, ScaleConfig
from burnish.config_model import LoraConfig, ModelConfig
from burnish.config_sft import Section, SftConfig, TeacherConfig
from burnish.tomlwriter import TomlWriteError, dumps_model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the field."""


# Numbers must be finite: a resolved config is saved as TOML and read back, and no field means
# anything at inf or nan (None is how a field says "no limit").
_Section = Section


# ----------------------------------------------------------------------------- core sections


def _check_env(name: str, kwargs: dict[str, Any]) -> None:
    """Raise ValueError unless `name` is a known environment that takes `kwargs`."""
    from burnish.envs.registry import check_env

    check_env(name, kwargs)


class EnvEntry(_Section):
    name: str
    """Built-in name, entry-point name, or "module:attr"."""
    weight: float = Field(default=1.0, gt=0)
    kwargs: dict[str, Any] = Field(default_factory=dict)


class EnvConfig(_Section):
    name: str | None = "arithmetic"
    """A single environment (ignored when `mix` is given)."""
    mix: list[EnvEntry] = Field(default_factory=list)
    """A weighted mixture of environments."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    max_turns: int | None = Field(default=None, ge=1)
    """Assistant turns per episode (None: the environment's own limit)."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Token budget per episode for sampled + environment tokens (None: no budget beyond turns)."""

    @model_validator(mode="after")
    def _one_env(self) -> EnvConfig:
        if not self.mix and not self.name:
            raise ValueError("set env.name or env.mix")
        for entry in self.entries():  # before any model loads: a bad name fails in a second
            _check_env(entry.name, entry.kwargs)
        return self

    def entries(self) -> list[EnvEntry]:
        return self.mix or [EnvEntry(name=self.name or "", kwargs=self.kwargs)]


class AlgorithmConfig(_Section):
    loss: str = "dapo"
    """A loss variant: a name of `burnish.algorithms.LOSSES` (grpo, dr_grpo, dapo, cispo, gspo,
    gspo_token)."""
    eps_low: float | None = Field(default=None, ge=0)
    eps_high: float | None = Field(default=None, ge=0)
    kl_coef: float = Field(default=0.0, ge=0)
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    aggregation: (
        Literal[
            "token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm", "seq-mean-token-sum"
        ]
        | None
    ) = None
    """None: the variant's default."""
    dual_clip: float | None = Field(default=None, gt=1)
    entropy_coef: float = 0.0
    entropy_gate_quantile: float | None = Field(default=None, gt=0, lt=1)
    distill_coef: float = Field(default=1.0, ge=0, le=1)
    """With a `[teacher]`: the weight λ of the per-token reverse-KL advantage, mixed as
    (1 − λ)·(reward advantage) + λ·(log π_teacher − log π_θ); 1 = distillation alone."""
    kl_bias_correction: bool = False
    """Multiply the k3 KL term by the importance ratio π_θ/π_old (DeepSeek-V3.2's estimator, TRL's
    `use_bias_correction_kl`); k3 only."""
    advantage_scale: Literal["group", "batch", "none"] | None = None
    """None: the variant's default (`LOSSES[loss].advantage_scale`: "none" for dr_grpo)."""
    dynamic_sampling: bool | None = None
    """Drop zero-variance groups and top the batch up (None: the variant's default, on for
    dapo)."""
    max_resample_rounds: int = Field(default=3, ge=0)
    """Cap on extra sampling rounds per step when dynamic sampling tops up the batch."""
    overlong_cache: int | None = Field(default=None, ge=1)
    """Soft overlong punishment (DAPO) over the last `overlong_cache` tokens of the budget."""
    mask_truncated: bool = False
    """Overlong filtering: no loss on completions cut off by the token budget."""
    tis: Literal["none", "token", "sequence"] = "none"
    """Truncated importance sampling against the sampler/trainer mismatch (docs/algorithms.md
    §17): weight each token's policy-gradient term by min(π_old / π_sampler, `tis_cap`), per
    token or with one weight per sequence. For server-sampled rollouts (`[sampler]`)."""
    tis_cap: float = Field(default=2.0, ge=1)
    """The cap C of the truncated importance weight."""

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        from burnish.algorithms import LOSSES

        if v not in LOSSES:
            raise ValueError(f"unknown loss {v!r}; allowed: {', '.join(LOSSES)}")
        return v


class RolloutConfig(_Section):
    prompts_per_step: int = Field(default=8, ge=1)
    group_size: int = Field(default=8, ge=2)
    """Completions per prompt; GRPO needs at least 2 to form a baseline."""
    max_new_tokens: int = Field(default=32, ge=1)
    """Per assistant turn."""
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)
    concurrency: int = Field(default=256, ge=1)


class TrainConfig(_Section):
    steps: int = Field(default=100, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = Field(default=1.0, gt=0)
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    micro_batch_size: int = Field(default=64, ge=1)
    """Sequences per forward/backward; gradients accumulate up to the optimizer step."""
    minibatches: int = Field(default=1, ge=1)
    """Optimizer steps per rollout batch (each on 1/minibatches of the sequences)."""
    inner_epochs: int = Field(default=1, ge=1)
    """Passes over the rollout batch (mu); >1 is off-policy and uses the clip / IS weights."""
    seed: int = 0
    shared_prefix: bool = True
    """Compute the prompt a group's rows share once per group in the training forward (same
    log-probs up to float rounding, fewer FLOPs)."""
    checkpoint_every: int = Field(default=50, ge=1)
    """Save a checkpoint every N steps (the last step is always saved)."""
    keep_checkpoints: int = Field(default=2, ge=1)
    max_unscorable_steps: int = Field(default=3, ge=1)
    """Stop the run after this many consecutive steps in which no rollout could be scored (a
    judge or its endpoint is down): such steps cannot train and usually mean a broken setup."""

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainConfig:
        if self.warmup_steps >= self.steps and self.warmup_steps > 0:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be < steps ({self.steps}): the "
                "learning rate would never reach its set value"
            )
        return self


class EvalConfig(_Section):
    every: int = Field(default=25, ge=0)
    """Evaluate on the test split every N steps (0: only before and after)."""
    n_tasks: int = Field(default=100, ge=1)
    samples: int = Field(default=4, ge=1)
    temperature: float = Field(default=1.0, ge=0)
    seed: int = 1234
    retention: list[str] = Field(default_factory=list)
    """Other skills (environment names) evaluated at every eval point to measure forgetting."""
    retention_max_new_tokens: int = Field(default=64, ge=1)
    """Tokens per assistant turn in the retention evaluations."""
    kl_tasks: int = Field(default=32, ge=1)
    """Test prompts of the new task on which the KL to the base policy is measured (one sample
    from each policy per prompt) at every eval point."""

    @field_validator("retention")
    @classmethod
    def _known_envs(cls, v: list[str]) -> list[str]:
        for name in v:
            _check_env(name, {})
        if len(set(v)) != len(v):
            raise ValueError(f"retention lists an environment twice: {v}")
        return v


class LogConfig(_Section):
    run_dir: str = "runs/latest"
    """The run directory (created; a directory that holds a run is refused unless resuming)."""

    @field_validator("run_dir")
    @classmethod
    def _usable_dir(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(
                "run_dir is empty, which would write the run into the current directory; "
                "name a directory, e.g. runs/my-run"
            )
        if not v.isprintable():
            raise ValueError(f"run_dir {v!r} holds control characters; use a plain path")
        return v

    sinks: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    """Extra metric sinks, used when their package is installed."""
    project: str = "burnish"


class JudgeEntry(_Section):
    name: str
    kind: str = "rubric"
    """A judge kind: a name of `burnish.judges.kinds.JUDGE_KINDS` (rubric, group, ensemble)."""
    role: Literal["reward", "metric", "monitor"] = "reward"
    weight: float = Field(default=1.0, allow_inf_nan=False)
    rubric: str | None = None
    """Rubric TOML path (rubric judges, and group judges that take one)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "judge"
    api_key_env: str | None = None
    temperature: float = 0.0
    timeout: float = Field(default=30.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1)
    requests_per_minute: float | None = Field(default=None, gt=0)
    view: Literal["completion", "full_trace"] = "completion"
    """What the judge sees: the final completion, or the whole conversation."""
    cache: bool = True
    price_per_1k_tokens: float | None = Field(default=None, ge=0)
    max_response_bytes: int = Field(default=2**20, ge=1)
    """Longest judge answer read; a longer body is a failed call (never a score)."""
    max_client_errors: int = Field(default=3, ge=1)
    """Client errors (4xx, answers that are not a chat completion) in a row, with no success in
    between, after which the judge's setup is taken as wrong and the run stops."""
    members: list[JudgeEntry] = Field(default_factory=list)
    """Ensemble members (kind = "ensemble"), each a judge entry of its own."""
    aggregate: str = "mean"
    """Ensemble aggregation: mean, min or mean_minus_std."""
    lam: float = 1.0
    """The lambda of mean_minus_std."""
    min_members: int | None = Field(default=None, ge=1)
    """Members that must score a rollout (None: all)."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        from burnish.judges.kinds import JUDGE_KINDS

        if v not in JUDGE_KINDS:
            raise ValueError(f"unknown judge kind {v!r}; allowed: {', '.join(JUDGE_KINDS)}")
        return v


class MonitorsConfig(_Section):
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    """Passed to burnish.monitors.MonitorConfig (thresholds, windows, probes, on_alert)."""


class EnvScoreConfig(_Section):
    role: Literal["reward", "metric", "monitor"] = "reward"
    weight: float = 1.0


class RunConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)
    env_score: EnvScoreConfig = Field(default_factory=EnvScoreConfig)
    """How the environment's programmatic score is used (reward, or held-out monitor)."""
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    """Where rollouts are sampled (in process, or an OpenAI-compatible server)."""
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    """Ray placement: rollout workers, trainer ranks, judge workers, async staleness."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    judges: list[JudgeEntry] = Field(default_factory=list)
    monitors: MonitorsConfig = Field(default_factory=MonitorsConfig)
    sft: SftConfig | None = None
    """Supervised fine-tuning (`burnish sft`, `burnish distill`; None there: the defaults)."""
    teacher: TeacherConfig | None = None
    """A teacher: `burnish distill` samples it; with `burnish train` it makes the run on-policy
    distillation."""

    @model_validator(mode="after")
    def _retention_is_other(self) -> RunConfig:
        own = {e.name for e in self.env.entries()}
        if clash := sorted(own & set(self.eval.retention)):
            raise ValueError(f"eval.retention names the run's own environment(s) {clash}")
        return self

    @model_validator(mode="after")
    def _served_policy(self) -> RunConfig:
        s = self.sampler
        if s.kind != "openai":
            return self
        if not s.model:
            raise ValueError(
                "sampler.kind = 'openai' needs sampler.model, the server's base model name "
                "(what GET /v1/models lists without a parent)"
            )
        if not self.lora.enabled:
            raise ValueError(
                "sampler.kind = 'openai' trains a LoRA adapter and loads it into the server "
                "after every step; set lora.enabled = true (full fine-tuning cannot be synced)"
            )
        if self.lora.rank > s.max_lora_rank:
            raise ValueError(
                f"lora.rank {self.lora.rank} exceeds sampler.max_lora_rank {s.max_lora_rank}, "
                "the server's --max-lora-rank (vLLM answers 500 to such an adapter): lower "
                "lora.rank, or start the server with a larger --max-lora-rank and set "
                "sampler.max_lora_rank to it"
            )
        return self


# ----------------------------------------------------------------------------- loading


def _section_of(loc: tuple) -> type[BaseModel] | None:
    """The config model that holds the field at `loc` (list indices skipped)."""
    model: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        inner = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type)]
        target = ann if isinstance(ann, type) else next(iter(inner), None)
        if not (isinstance(target, type) and issubclass(target, BaseModel)):
            return None
        model = target
    return model


def _unknown_field(loc: tuple) -> str:
    """`unknown field 'a.b'`, with the nearest valid name and the section's fields."""
    where = ".".join(str(p) for p in loc)
    section = _section_of(loc)
    if section is None:
        return f"unknown field {where!r}"
    names = list(section.model_fields)
    near = difflib.get_close_matches(str(loc[-1]), names, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"unknown field {where!r}{hint} (fields here: {', '.join(names)})"


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        bad = e.get("input")
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            lines.append(_unknown_field(e["loc"]))
        else:
            lines.append(f"field {loc!r}: {msg} (got {bad!r})")
    return "; ".join(lines)


def _parse_value(raw: str) -> Any:
    """Parse an override value as a TOML literal (number, bool, list, string); bare words are strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides to a raw config dict (in place) and return it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty field name")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {p!r} is not a section")
        node[parts[-1]] = _parse_value(raw.strip())
    return data


def from_dict(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"invalid configuration: {_describe(e)}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a run configuration from TOML (or the defaults when `path` is None) plus overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"{p} is not UTF-8 text (byte {e.start}: {e.reason}); save the config as UTF-8"
            ) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p} is not valid TOML: {e}") from None
    return from_dict(apply_overrides(data, list(overrides or [])))


def loads_config(text: str, overrides: list[str] | None = None) -> RunConfig:
    """Load a run configuration from a TOML string plus overrides."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config is not valid TOML: {e}") from None
    return from_dict(apply_overrides(data, list(overrides or [])))


def to_toml(config: RunConfig) -> str:
    """Serialise a config as TOML that `loads_config` reads back to an equal config.

    None fields whose default is None are omitted (they mean "default"); floats may be inf,
    -inf or nan; strings are written in plain ASCII with TOML escapes.

    Raises:
        ConfigError: a value TOML cannot hold (None where the default is not None, or inside
            `kwargs` / `options`; an object that is no str, number, bool, list or table).
    """
    try:
        return dumps_model(config)
    except TomlWriteError as e:
        raise ConfigError(str(e)) from None


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config atomically."""
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(to_toml(config))
    tmp.replace(p)
