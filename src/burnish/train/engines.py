"""Where a run samples: the policy in this process, or an OpenAI-compatible server (`[sampler]`).

With ``sampler.kind = "local"`` a `LocalSampler` shares the policy's weights, so nothing is
copied after a step. With ``"openai"`` an `OpenAISampler` sends rollouts and in-loop evaluations
to the server (vLLM or ``burnish serve``), and after every optimizer step `sync` writes the
adapter under ``sampler.adapter_dir`` (default ``RUN_DIR/served``) and loads it into the server.

Adapter names are scoped to the run: the scope is a random id written once to
``RUN_DIR/sampler.json`` and read back on ``--resume``, so a resumed run cleans up what its
earlier process left on the server, and two runs on one server never touch each other's
adapters (docs/engines.md).

Placement (`[scale]`, docs/scale.md): `build_placement` gives the run's group source and
trainer: in process (`LocalGroups`, `LocalTrainer`) by default, or Ray rollout workers
(`burnish.scale.driver.ScaledGroups`) and data-parallel ranks
(`burnish.scale.trainer_ranks.TrainerRanks`); Ray is only imported for the latter.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from burnish.config import RunConfig
from burnish.rollout import LocalSampler, Sampler
from burnish.rollout.openai_sampler import OpenAISampler

SCOPE_FILE = "sampler.json"


def build_sampler(config: RunConfig, policy: Any, tokenizer: Any, run_dir: Path) -> Sampler:
    """The run's sampler as `config.sampler` says (see the module docstring)."""
    s = config.sampler
    if s.kind == "local":
        return LocalSampler(policy, tokenizer)
    adapter_dir = Path(s.adapter_dir) if s.adapter_dir else run_dir / "served"
    adapter_dir.mkdir(parents=True, exist_ok=True)
    return OpenAISampler(
        s.base_url,
        s.model or "",
        s.api_key_env,
        adapter_dir=adapter_dir.resolve(),
        scope=run_scope(run_dir),
        timeout=s.timeout,
        max_concurrency=s.max_concurrency,
        max_retries=s.max_retries,
        retry_backoff=s.retry_backoff,
        max_lora_rank=s.max_lora_rank,
        seed=config.train.seed,
    )


def build_placement(
    config: RunConfig,
    settings: Any,
    tasks: Any,
    sampler: Sampler,
    tokenizer: Any,
    scorers: Any,
    run_dir: Path,
) -> tuple[Any, Any, bool]:
    """The run's group source and trainer, as `config.scale` places them, and whether this
    call started a local Ray cluster (which `close_placement` then shuts down)."""
    from burnish.train.groups import LocalGroups
    from burnish.train.step import LocalTrainer

    s = config.scale
    if not s.distributed:
        return LocalGroups(settings, tasks, sampler, tokenizer, scorers), LocalTrainer(), False
    from burnish.scale.driver import ScaledGroups, ensure_ray
    from burnish.scale.trainer_ranks import TrainerRanks

    started = ensure_ray(config)
    trainer: Any = TrainerRanks(config) if s.trainer_workers > 1 else LocalTrainer()
    source: Any = (
        ScaledGroups(config, settings, tasks, run_dir)
        if s.rollout_workers > 0
        else LocalGroups(settings, tasks, sampler, tokenizer, scorers)
    )
    return source, trainer, started


async def close_placement(source: Any, trainer: Any, started_ray: bool) -> None:
    """Stop the Ray workers and ranks, and the local cluster the run started."""
    await source.close()
    trainer.close()
    if started_ray:
        import ray

        ray.shutdown()


def run_scope(run_dir: Path) -> str:
    """The run's adapter-name scope, ``burnish-<8 hex>``: made on the first call, then read
    back from ``RUN_DIR/sampler.json`` (written atomically)."""
    path = Path(run_dir) / SCOPE_FILE
    if path.is_file():
        scope = json.loads(path.read_text()).get("scope")
        if isinstance(scope, str) and scope:
            return scope
    scope = f"burnish-{secrets.token_hex(4)}"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"scope": scope}))
    os.replace(tmp, path)
    return scope


def eval_sampler(sampler: Sampler, seed: int) -> Sampler | None:
    """The sampler an evaluation uses: a served run's sampler with the evaluation's own seed
    stream; None for an in-process run (the evaluation builds its own seeded `LocalSampler`)."""
    return sampler.fork(seed) if isinstance(sampler, OpenAISampler) else None


async def close_sampler(sampler: Sampler) -> None:
    """Release the sampler's worker thread or HTTP connections."""
    if isinstance(sampler, OpenAISampler):
        await sampler.aclose()
    elif isinstance(sampler, LocalSampler):
        sampler.close()
