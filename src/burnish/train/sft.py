"""Supervised fine-tuning (`burnish sft`): next-token cross-entropy on assistant tokens only.

The run is built like an RL run (`start_run`: model, LoRA or full fine-tuning, optimizer, run
store, checkpoints, evaluations with retention and KL to base) and leaves a run directory of the
same shape (`summary.json` with before/after, `adapter/`, `run.db`). One step: the step's
transcripts (`batch_indices`) -> packed rows (`pack_rows`) -> length-sorted micro-batches ->
loss ``Σ_tokens −log p / N_step`` (the token-mean over the *whole optimizer step*, the
normalisation of the RL losses' ``token-mean``, so the gradient does not depend on the
micro-batch size) -> one optimizer step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from burnish.algorithms import aggregate
from burnish.config import RunConfig, SftConfig
from burnish.models.packed import packed_logprobs
from burnish.train.evaluation import run_eval
from burnish.train.heap import steps_heap
from burnish.train.loop import Run, checkpoint, close_run, due_evals, end_run, publish, start_run
from burnish.train.sft_data import (
    PackedRows,
    batch_indices,
    encode_chat,
    env_transcripts,
    jsonl_transcripts,
    pack_rows,
)
from burnish.types import Message

OnStep = Callable[[int, dict[str, float]], None]


def sft(
    config: RunConfig,
    *,
    resume: bool = False,
    on_step: OnStep | None = None,
    transcripts: Sequence[Sequence[Message]] | None = None,
) -> dict[str, Any]:
    """Run SFT as configured (`[sft]`); returns the summary also written to `summary.json`.

    `transcripts` replaces `sft.data` (`burnish distill` passes the teacher's filtered samples).
    """
    return asyncio.run(sft_async(config, resume=resume, on_step=on_step, transcripts=transcripts))


async def load_sft_data(s: SftConfig, seed: int) -> list[list[Message]]:
    """The transcripts `sft.data` names ("env:NAME" or a JSONL path)."""
    if s.data.startswith("env:"):
        return await env_transcripts(s.data.removeprefix("env:"), s.n_examples, seed)
    if s.data == "teacher":
        raise ValueError('sft.data = "teacher" is what `burnish distill` trains on; run that')
    return jsonl_transcripts(s.data)


async def sft_async(
    config: RunConfig,
    *,
    resume: bool = False,
    on_step: OnStep | None = None,
    transcripts: Sequence[Sequence[Message]] | None = None,
    method: str = "sft",
) -> dict[str, Any]:
    """`sft` for callers that already run an event loop."""
    t0 = time.time()
    if config.sft is None:  # the run's config.toml records the settings used
        config = config.model_copy(update={"sft": SftConfig()})
    if config.sampler.kind != "local":
        raise ValueError(
            f"sampler.kind = {config.sampler.kind!r} applies to `burnish train` (rollouts on a "
            f"server); `burnish {method}` trains and evaluates in process: set sampler.kind = "
            "'local'"
        )
    run = start_run(config, resume)
    run.method = method
    try:
        data = transcripts if transcripts is not None else await load_sft_data(config.sft, 0)
        encoded = [encode_chat(run.tokenizer, m) for m in data]
        return await _sft(run, encoded, on_step, t0)
    finally:
        close_run(run)


async def _sft(run: Run, encoded, on_step: OnStep | None, t0: float) -> dict[str, Any]:
    config, s = run.config, run.config.sft
    if run.before is None:
        run.before = await run_eval(run, step=0)
    saved = run.start
    with steps_heap(config.model.keep_freed_memory):  # docs/performance.md §2
        for step in range(run.start, config.train.steps):
            ts = time.time()
            idx = batch_indices(len(encoded), s.batch_size, config.train.seed, step)
            rows = pack_rows([encoded[i] for i in idx], s.max_length, s.pack)
            metrics = sft_update(
                run.policy,
                rows,
                run.optimizer,
                micro_batch_size=config.train.micro_batch_size,
                grad_clip=config.train.grad_clip,
            )
            run.scheduler.step()
            metrics.update(
                {
                    "compute/samples": float(len(idx)),
                    "compute/tokens": float(rows.lengths_R.sum()),
                    "time/step": time.time() - ts,
                    "lr": run.scheduler.get_last_lr()[0],
                }
            )
            metrics.update(await due_evals(run, step))
            publish(run, step, metrics, on_step)
            if (step + 1) % config.train.checkpoint_every == 0:
                saved = checkpoint(run, step + 1)
    return await end_run(run, saved, t0)


def sft_update(
    policy,
    rows: PackedRows,
    optimizer: torch.optim.Optimizer,
    *,
    micro_batch_size: int,
    grad_clip: float | None,
) -> dict[str, float]:
    """One optimizer step of cross-entropy on the rows' masked tokens, normalised by the step's
    token count; micro-batches are length-sorted and trimmed to their longest row.

    Returns `loss/total` (mean NLL per trained token), `grad/norm`, `sft/tokens`, `sft/rows`.
    """
    n_tokens = float(rows.mask_R_L.sum())
    if n_tokens == 0:
        raise ValueError("the step's transcripts have no assistant token to train on")
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    order = torch.argsort(rows.lengths_R, descending=True, stable=True)
    total = 0.0
    for idx in order.split(micro_batch_size):
        L = int(rows.lengths_R[idx].max())
        logp = packed_logprobs(
            policy,
            rows.tokens_R_L[idx, :L],
            rows.segments_R_L[idx, :L],
            rows.positions_R_L[idx, :L],
        )
        mask = rows.mask_R_L[idx, :L]
        loss = aggregate(-logp, mask, "token-mean", num_tokens=n_tokens)
        loss.backward()
        total += float(loss.detach())
    if grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    else:
        norm = torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in params if p.grad is not None])
        )
    optimizer.step()
    return {
        "loss/total": total,
        "grad/norm": float(norm),
        "sft/tokens": n_tokens,
        "sft/rows": float(rows.tokens_R_L.shape[0]),
    }
