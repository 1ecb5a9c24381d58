"""The teacher of distillation: a local model (with an optional adapter), or a served one.

On-policy distillation (`burnish train` with a `[teacher]`) needs the teacher's log-probs of the
student's own tokens: computed in process (`teacher_logprobs`), or, with `teacher.base_url`, by
an OpenAI-compatible completions server that returns prompt log-probs the way vLLM does
(`served_teacher_logprobs`, through `OpenAISampler.prompt_logprobs`); `distill_batch` turns them
into per-token advantages (`burnish.algorithms.distill`). `burnish distill` samples the teacher
instead (locally, or through any OpenAI-compatible endpoint: `burnish.train.distill`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from burnish.algorithms.distill import distill_advantages, mix_advantages
from burnish.algorithms.reduce import masked_mean
from burnish.config import ModelConfig, TeacherConfig
from burnish.models import load_model, sequence_logprobs
from burnish.models.lora import load_adapter
from burnish.train.plan import DistillSettings
from burnish.types import TrainBatch


def load_teacher(teacher: TeacherConfig, student: ModelConfig, tokenizer: Any) -> Any:
    """The local teacher model (eval mode, frozen), checked to share the student's vocabulary;
    with `teacher.base_url`, an `OpenAISampler` on the served teacher (whose vocabulary cannot be
    checked from here: it must be the student's, as the student's token ids are sent as-is)."""
    if teacher.base_url is not None:
        if teacher.model is not None or teacher.adapter is not None:
            raise ValueError(
                "set either teacher.base_url (a served teacher) or teacher.model / "
                "teacher.adapter (one computed in process), not both"
            )
        return served_teacher(teacher)
    model, teacher_tok = local_teacher(teacher, student)
    if teacher_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"the teacher {teacher.model or student.name!r} has another vocabulary than the "
            "student: per-token distillation needs one tokenizer"
        )
    return model


def served_teacher(teacher: TeacherConfig):
    """An `OpenAISampler` on the teacher served at `teacher.base_url`."""
    from burnish.rollout.openai_sampler import OpenAISampler

    return OpenAISampler(
        teacher.base_url,
        teacher.served_model,
        teacher.api_key_env,
        max_concurrency=teacher.concurrency,
    )


def local_teacher(teacher: TeacherConfig, student: ModelConfig) -> tuple[Any, Any]:
    """The in-process teacher (`teacher.model`, default the student's base, plus its adapter)
    and its tokenizer, in eval mode with every parameter frozen."""
    model, tok = load_model(
        teacher.model or student.name,
        dtype=student.dtype,
        device=student.device,
        trust_remote_code=student.trust_remote_code,
    )
    if teacher.adapter is not None:
        model = load_adapter(model, teacher.adapter)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


@torch.no_grad()
def teacher_logprobs(teacher: Any, batch: TrainBatch, micro_batch_size: int) -> torch.Tensor:
    """`[B, T]` teacher log-probs (temperature 1: the teacher's own distribution) of the batch's
    tokens, 0 on padding."""
    B, T = batch.tokens_B_T.shape
    out_B_T = torch.zeros(B, T)
    for start in range(0, B, micro_batch_size):
        idx = torch.arange(start, min(B, start + micro_batch_size))
        t = int(batch.lengths_B[idx].max())
        attn = (torch.arange(t)[None, :] < batch.lengths_B[idx, None]).long()
        logp, _ = sequence_logprobs(teacher, batch.tokens_B_T[idx, :t], attention_mask_B_T=attn)
        out_B_T[idx, :t] = logp.float()
    return out_B_T


async def served_teacher_logprobs(teacher: Any, batch: TrainBatch) -> torch.Tensor:
    """`teacher_logprobs` from a served teacher (an `OpenAISampler`): one prompt-log-prob
    request per row."""
    B, T = batch.tokens_B_T.shape
    rows = [batch.tokens_B_T[i, :n].tolist() for i, n in enumerate(batch.lengths_B.tolist())]
    out_B_T = torch.zeros(B, T)
    for i, row in enumerate(await teacher.prompt_logprobs(rows)):
        out_B_T[i, : len(row)] = torch.tensor(row)
    return out_B_T


async def distill_batch(
    teacher: Any, batch: TrainBatch, settings: DistillSettings
) -> tuple[TrainBatch, dict[str, float]]:
    """The batch with per-token advantages from the teacher, and `distill/*` metrics:
    `distill/reverse_kl` (mean over sampled tokens of log π_θ − log π_T, the sampled-token
    estimate) and `distill/teacher_tokens` (tokens the teacher scored)."""
    mask_B_T = batch.mask_B_T.bool()
    if hasattr(teacher, "prompt_logprobs"):  # a served teacher
        teacher_B_T = await served_teacher_logprobs(teacher, batch)
    else:
        teacher_B_T = teacher_logprobs(teacher, batch, settings.micro_batch_size)
    adv_B_T = distill_advantages(batch.sampler_logp_B_T, teacher_B_T, mask_B_T)
    mixed_B_T = mix_advantages(batch.advantages_B, adv_B_T, settings.coef)
    metrics = {
        "distill/reverse_kl": float(-masked_mean(adv_B_T, mask_B_T)),
        "distill/teacher_tokens": float(batch.lengths_B.sum()),
    }
    return dataclasses.replace(batch, advantages_B_T=mixed_B_T), metrics
