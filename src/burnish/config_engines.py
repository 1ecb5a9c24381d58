"""The configuration sections of where a run samples and trains: `[sampler]` (in process, or a
vLLM / `burnish serve` server: docs/engines.md) and `[scale]` (Ray rollout workers, judge workers,
data-parallel trainer ranks, async off-policy: docs/scale.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from burnish.config_sft import Section as _Section


class SamplerConfig(_Section):
    kind: Literal["local", "openai"] = "local"
    """Where rollouts and in-loop evaluations are sampled: "local" (the policy in this process)
    or "openai" (an OpenAI-compatible server with vLLM's API: vLLM or `burnish serve`, started
    with LoRA enabled and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`; docs/engines.md)."""
    base_url: str = "http://127.0.0.1:8000/v1"
    """The server's root, including `/v1`."""
    model: str | None = None
    """The server's base model name (its `--served-model-name`; required with kind "openai")."""
    api_key_env: str | None = None
    """Environment variable holding the server's API key (None: none sent)."""
    adapter_dir: str | None = None
    """Where each step's adapter is written for the server to read (None: RUN_DIR/served)."""
    max_lora_rank: int = Field(default=16, ge=1)
    """The server's `--max-lora-rank` (vLLM's default 16); `lora.rank` is checked against it."""
    timeout: float = Field(default=600.0, gt=0)
    """Seconds per request."""
    max_concurrency: int = Field(default=64, ge=1)
    """Requests in flight at once."""
    max_retries: int = Field(default=4, ge=0)
    """Retries of a request that failed with a server error (5xx) or a connection error."""
    retry_backoff: float = Field(default=1.0, gt=0)
    """Seconds before the first retry; doubles each time."""


class ScaleConfig(_Section):
    """Scale-out on Ray (docs/scale.md). The defaults are the single-process run."""

    rollout_workers: int = Field(default=0, ge=0)
    """Ray actors that sample and score groups, each with its own sampler (0: the trainer's
    process samples, as without this section)."""
    rollout_urls: list[str] = Field(default_factory=list)
    """Servers (vLLM, `burnish serve`; each root with `/v1`) the rollout workers drive, worker i
    the URL i mod len; empty: every worker holds its own copy of the policy in process."""
    trainer_workers: int = Field(default=1, ge=1)
    """Data-parallel training ranks (torch.distributed: gloo on CPU, NCCL on GPU): the trainer's
    process is rank 0, the others are Ray actors. 1: train in process only."""
    trainer_strategy: Literal["ddp", "fsdp2"] = "ddp"
    """How trainer ranks exchange gradients: "ddp" (`DistributedDataParallel`, gradients summed
    once per optimizer step). "fsdp2" (`fully_shard`) is refused at load: rank 0 samples,
    evaluates and checkpoints with the full weights and optimizer, which FSDP2 shards."""
    collective_timeout_s: float = Field(default=300.0, gt=0)
    """How long a trainer rank waits in a collective for the others (`init_process_group`'s
    timeout); a rank whose process died is noticed at once (docs/scale.md §4)."""
    judge_workers: int = Field(default=0, ge=0)
    """Ray actors that score groups for the rollout workers (concurrent judge clients on their
    own pool; 0: each rollout worker scores its own groups)."""
    ray_address: str | None = None
    """The Ray cluster to join ("auto", "ray://host:10001", "host:6379"); None: join the one
    this process already started, else start a local one."""
    max_off_policy_steps: int = Field(default=0, ge=0)
    """How many optimizer steps older than the policy being trained a group may be (0:
    synchronous: every group is sampled by the current policy); older groups are dropped."""
    actor_cpus: float = Field(default=1.0, ge=0)
    """CPUs each rollout worker, judge worker and trainer rank asks Ray for."""
    actor_gpus: float = Field(default=0.0, ge=0)
    """GPUs each in-process rollout worker and trainer rank asks Ray for (NCCL when > 0)."""
    local_cpus: int | None = Field(default=None, ge=1)
    """CPUs of the local cluster started when no cluster is running (None: Ray's own count)."""

    @model_validator(mode="after")
    def _workers_for_urls(self) -> ScaleConfig:
        if self.rollout_urls and self.rollout_workers == 0:
            raise ValueError("scale.rollout_urls needs scale.rollout_workers >= 1 to drive them")
        if self.max_off_policy_steps and self.rollout_workers == 0:
            raise ValueError(
                "scale.max_off_policy_steps > 0 samples while the trainer trains, which needs "
                "scale.rollout_workers >= 1"
            )
        if self.judge_workers and self.rollout_workers == 0:
            raise ValueError("scale.judge_workers score for rollout workers: set rollout_workers")
        if self.trainer_strategy == "fsdp2":
            raise ValueError(
                'scale.trainer_strategy = "fsdp2" is not supported by a run: FSDP2 (fully_shard) '
                "shards the parameters and the optimizer state over the trainer ranks, but rank 0 "
                "samples, evaluates and writes checkpoints alone with the full weights and the "
                'full optimizer state; use "ddp" (docs/scale.md §5)'
            )
        return self

    @property
    def distributed(self) -> bool:
        """Whether the run uses Ray at all."""
        return self.rollout_workers > 0 or self.trainer_workers > 1 or self.judge_workers > 0
