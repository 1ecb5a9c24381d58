"""The reproducible pretraining recipe of the shipped `burnish-tiny` model.

`burnish-tiny` is a small Llama with the burnish character tokenizer, trained from scratch on
transcripts of the built-in environments written by noisy teachers (`noisy_teachers`): the gold
teacher most of the time, a plausible mistake otherwise. The model learns the teacher's
distribution, so it samples the right answer often but not always: the situation RL is for.

A transcript is a whole conversation: the task's prompt, then teacher turns and the
environment's answers, produced by actually stepping the environment (tool results come from
actually running the tool). It is tokenized exactly as the chat template renders it, and the loss
is next-token cross-entropy on the assistant tokens only (content and the closing `<|end|>`), as
in supervised fine-tuning. The observation that comes with `done` is left out (nothing is ever
sampled after it).

Environments are mixed by weight (arithmetic, the demo, weighs most). Batches are drawn on the
fly from a generator seeded by `seed`; with the same seed and thread count, the same machine
writes the same weights.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from burnish.envs.registry import load_env
from burnish.envs.tool_calls import COMPACT
from burnish.models.noisy_teachers import DEFAULT_P, NoisyTeacher, noisy_teacher
from burnish.models.threads import set_threads
from burnish.models.tiny import tiny_model
from burnish.seeds import seeded_rng
from burnish.types import Message, Task

__all__ = [
    "DEFAULT_WEIGHTS",
    "PretrainConfig",
    "PretrainResult",
    "TranscriptStream",
    "encode_transcript",
    "pretrain",
    "transcript",
]

DEFAULT_WEIGHTS: dict[str, float] = {
    "arithmetic": 0.6,
    "reverse": 0.25,
    "guess-number": 0.05,
    "calculator": 0.05,
    "keywords": 0.05,
}
"""Share of each built-in environment in the pretraining mixture."""

SHIPPED_SEED = 0
"""Seed of the shipped `burnish-tiny` (the default, so the plain command rebuilds it)."""

IGNORE = -100
"""Label of positions that carry no loss (cross-entropy's ignore index)."""


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that decides the pretrained weights (besides the seed)."""

    # --- model ---
    hidden_size: int = 96
    """Model width."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 3
    """Attention heads (3 of 32: vLLM's CPU attention refuses head size 24)."""
    max_position: int = 256
    """Longest sequence the model accepts (RoPE: costs no parameters)."""
    # --- data ---
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    """Mixture weight of each environment."""
    p: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_P))
    """Per-turn probability that the teacher of each environment is right."""
    # --- optimisation ---
    steps: int = 3000
    """Optimizer steps."""
    batch_size: int = 32
    """Transcripts per step."""
    chunks: int = 2
    """Micro-batches per step, cut from the step's transcripts sorted by length."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warmup, cosine decay to 10%)."""
    warmup_steps: int = 100
    """Linear warmup."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    threads: int = 1
    """Torch CPU threads (set explicitly: the weights depend on it)."""

    def __post_init__(self) -> None:
        unknown = set(self.weights) - set(DEFAULT_P)
        if unknown or not self.weights:
            raise ValueError(
                f"pretraining weights name unknown environments {sorted(unknown)}; "
                f"allowed: {', '.join(DEFAULT_P)}"
            )
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError(
                f"pretraining weights must be >= 0 with a positive sum: {self.weights}"
            )
        for name, value in (
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("chunks", self.chunks),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


@dataclass(frozen=True)
class PretrainResult:
    """What `pretrain` wrote and how it went."""

    out_dir: Path
    num_parameters: int
    wall_s: float
    """Seconds of the training loop (data generation included, saving excluded)."""
    final_loss: float
    """Mean loss of the last 50 steps."""
    losses: tuple[float, ...]
    """Loss of every step."""


async def transcript(
    env: Any, teacher: NoisyTeacher, task: Task, rng: random.Random
) -> list[Message]:
    """One conversation of `teacher` playing `task` (prompt included, final observation not)."""
    messages = list(await env.reset(task))
    state: Any = None
    for _ in range(env.max_turns):
        action = teacher(task, messages, rng, COMPACT)
        result = await env.step(task, state, action)
        messages.append(action)
        if result.done:
            break
        messages += result.observation
        state = result.state
    return messages


def encode_transcript(tokenizer: Any, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
    """Token ids of the chat-template rendering of `messages`, and the loss mask.

    The ids equal ``tokenizer.encode(apply_chat_template(messages))`` for the burnish template
    (``<|role|>content<|end|>`` per message); the mask is 1 on each assistant message's content
    and its closing `<|end|>` (what the model samples), 0 elsewhere.
    """
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    ids: list[int] = []
    mask: list[int] = []
    for m in messages:
        content = tokenizer.encode(m.content, add_special_tokens=False)
        role = tokenizer.convert_tokens_to_ids(f"<|{m.role}|>")
        trained = int(m.role == "assistant")
        ids += [role, *content, end]
        mask += [0] + [trained] * (len(content) + 1)
    return ids, mask


class TranscriptStream:
    """An endless, seeded stream of encoded noisy-teacher transcripts from an environment mix.

    Each environment's train tasks are taken in order; when a stream runs out it restarts with
    the next seed. Environments are drawn by weight.
    """

    def __init__(self, config: PretrainConfig, tokenizer: Any, seed: int) -> None:
        self.tokenizer = tokenizer
        self.seed = seed
        self.rng = seeded_rng("burnish-tiny", seed)
        names = [n for n, w in config.weights.items() if w > 0]
        self.names, self.weights = names, [config.weights[n] for n in names]
        self.envs = {n: load_env(n) for n in names}
        self.teachers = {n: noisy_teacher(self.envs[n], config.p.get(n)) for n in names}
        self.rounds = dict.fromkeys(names, 0)
        self.tasks: dict[str, Iterator[Task]] = {n: self._tasks(n) for n in names}
        self.loop = asyncio.new_event_loop()

    def _tasks(self, name: str) -> Iterator[Task]:
        return iter(self.envs[name].tasks("train", self.seed * 1000 + self.rounds[name]))

    def _next_task(self, name: str) -> Task:
        task = next(self.tasks[name], None)
        if task is None:
            self.rounds[name] += 1
            self.tasks[name] = self._tasks(name)
            task = next(self.tasks[name])
        return task

    async def _batch(self, n: int) -> list[list[Message]]:
        out = []
        for _ in range(n):
            name = self.rng.choices(self.names, self.weights)[0]
            task = self._next_task(name)
            out.append(await transcript(self.envs[name], self.teachers[name], task, self.rng))
        return out

    def batch(self, n: int, chunks: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """`n` transcripts as right-padded ``(input_ids [b, T], labels [b, T])`` micro-batches.

        Transcripts are sorted by length and cut into `chunks` micro-batches, each padded to its
        own longest transcript (short arithmetic transcripts are not padded to the longest
        multi-turn one).
        """
        messages = self.loop.run_until_complete(self._batch(n))
        encoded = sorted((encode_transcript(self.tokenizer, m) for m in messages), key=_length)
        size = math.ceil(n / chunks)
        return [_pad(encoded[i : i + size], self.tokenizer.pad_token_id) for i in range(0, n, size)]

    def close(self) -> None:
        self.loop.close()


def _length(item: tuple[list[int], list[int]]) -> int:
    return len(item[0])


def _pad(encoded: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in encoded)
    input_ids_B_T = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels_B_T = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for b, (ids, mask) in enumerate(encoded):
        input_ids_B_T[b, : len(ids)] = torch.tensor(ids)
        labels_B_T[b, : len(ids)] = torch.tensor(
            [t if k else IGNORE for t, k in zip(ids, mask, strict=True)]
        )
    return input_ids_B_T, labels_B_T


def lr_at(step: int, config: PretrainConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to 10% of it at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def masked_lm_loss_sum(logits_B_T_V: torch.Tensor, labels_B_T: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over the positions whose label is not `IGNORE`."""
    return torch.nn.functional.cross_entropy(
        logits_B_T_V[:, :-1].reshape(-1, logits_B_T_V.shape[-1]),
        labels_B_T[:, 1:].reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


def pretrain(
    out_dir: str | Path,
    *,
    seed: int = SHIPPED_SEED,
    steps: int | None = None,
    config: PretrainConfig | None = None,
    log_every: int = 0,
) -> PretrainResult:
    """Pretrain `burnish-tiny` from scratch and save it as a loadable model directory.

    Args:
        out_dir: where the model is written (created; existing files are overwritten):
            ``config.json``, ``model.safetensors``, ``generation_config.json``, the tokenizer
            files and ``pretrain.json`` (the recipe and the measured wall time).
        seed: seeds the initialisation and the data stream.
        steps: optimizer steps; None keeps ``config.steps``.
        config: the recipe; default `PretrainConfig()`.
        log_every: print the mean loss every this many steps (0: silent).

    Returns:
        A `PretrainResult`.
    """
    config = config or PretrainConfig()
    if steps is not None:
        config = PretrainConfig(**{**asdict(config), "steps": steps})
    set_threads(config.threads)
    model, tokenizer = tiny_model(
        "llama",
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        max_position=config.max_position,
        seed=seed,
    )
    stream = TranscriptStream(config, tokenizer, seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay
    )
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    try:
        for step in range(config.steps):
            micro_batches = stream.batch(config.batch_size, config.chunks)
            # The loss is the mean over the step's trained tokens, whatever the chunking.
            n_tokens = sum(int((labels[:, 1:] != IGNORE).sum()) for _, labels in micro_batches)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, config)
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for input_ids_B_T, labels_B_T in micro_batches:
                logits_B_T_V = model(input_ids=input_ids_B_T).logits
                loss = masked_lm_loss_sum(logits_B_T_V, labels_B_T) / n_tokens
                loss.backward()
                total += loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(total)
            if log_every and (step + 1) % log_every == 0:
                recent = losses[-log_every:]
                elapsed = time.perf_counter() - start
                print(f"step {step + 1}: loss {sum(recent) / len(recent):.4f} ({elapsed:.0f} s)")
    finally:
        stream.close()
    wall_s = time.perf_counter() - start
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    tail = losses[-50:]
    result = PretrainResult(out, n_params, wall_s, sum(tail) / len(tail), tuple(losses))
    recipe = {**asdict(config), "seed": seed, "num_parameters": n_params}
    record = {"recipe": recipe, "wall_s": round(wall_s, 1), "final_loss": result.final_loss}
    (out / "pretrain.json").write_text(json.dumps(record, indent=2) + "\n")
    return result
