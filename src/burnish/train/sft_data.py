"""SFT data: transcripts from an environment's gold answers or a JSONL file, encoded with the
chat template as the episode runner tokenizes episodes, and packed into rows.

Encoding (`encode_chat`) mirrors `burnish.rollout.episode`: the rendering up to each assistant
turn's generation prompt is tokenized with mask 0, the assistant's content and the end token
with mask 1 (what a policy samples), and every later template suffix is taken after the text
recorded so far. So SFT trains exactly the tokens RL would sample, and the loss is on assistant
tokens only.

Packing (`pack_rows`): transcripts are sorted by length (longest first) and placed first-fit
into rows of at most `max_length` tokens. Each transcript is a segment with its own id; the
trainer's attention is block-diagonal over segments and positions restart at 0 in each, so no
token sees another transcript (`burnish.models.packed`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from burnish.envs import load_env
from burnish.rollout.episode import ChatCodec, TemplatePrefixError
from burnish.types import Message


async def env_transcripts(name: str, n: int, seed: int) -> list[list[Message]]:
    """The gold transcripts of the first `n` train tasks of environment `name` (prompt, teacher
    turns and observations, up to the last assistant message)."""
    env = load_env(name)
    out = []
    for task in islice(env.tasks("train", seed), n):
        messages, _ = await env.gold_transcript(task)
        out.append(_through_last_assistant(messages))
    if not out:
        raise ValueError(f"environment {name!r} has no train tasks")
    return out


def _through_last_assistant(messages: Sequence[Message]) -> list[Message]:
    last = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return list(messages[: last + 1])


def jsonl_transcripts(path: str | Path) -> list[list[Message]]:
    """Transcripts from a JSONL file: one object per line with a "messages" list of
    {"role", "content"} objects (blank lines skipped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SFT data file not found: {p}")
    out = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)["messages"]
            messages = [Message(str(m["role"]), str(m["content"])) for m in raw]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(
                f'{p}:{n}: expected {{"messages": [{{role, content}}, ...]}}: {e}'
            ) from None
        if not any(m.role == "assistant" for m in messages):
            raise ValueError(f"{p}:{n}: the transcript has no assistant message to train on")
        out.append(messages)
    if not out:
        raise ValueError(f"{p} holds no transcripts")
    return out


def encode_chat(
    tokenizer: Any, messages: Sequence[Message], tools: Sequence[dict] = ()
) -> tuple[list[int], list[int]]:
    """Token ids of a transcript as the episode runner records it, and the loss mask (1 on each
    assistant message's content and its end token).

    Raises:
        TemplatePrefixError: the chat template renders earlier turns differently later on.
    """
    codec = ChatCodec(tokenizer, tools)
    end = tokenizer.eos_token_id
    ids: list[int] = []
    mask: list[int] = []
    text = ""
    for i, m in enumerate(messages):
        if m.role != "assistant":
            continue
        prefix = codec.render(messages[:i], add_generation_prompt=True)
        if not prefix.startswith(text):
            raise TemplatePrefixError(
                f"the chat template rewrites earlier turns: recorded {text[-80:]!r}, rendered "
                f"{prefix[:200]!r}..."
            )
        glue = codec.encode(prefix[len(text) :])
        sampled = codec.encode(m.content) + ([] if end is None else [int(end)])
        ids += glue + sampled
        mask += [0] * len(glue) + [1] * len(sampled)
        text = prefix + codec.decode(sampled)
    return ids, mask


@dataclass(frozen=True)
class PackedRows:
    """Rows of packed transcripts: `[R, L]` tokens, loss mask, segment ids (0 = padding) and
    positions within each segment; `lengths_R` counts real tokens."""

    tokens_R_L: torch.Tensor
    mask_R_L: torch.Tensor
    segments_R_L: torch.Tensor
    positions_R_L: torch.Tensor
    lengths_R: torch.Tensor


def pack_rows(
    examples: Sequence[tuple[list[int], list[int]]], max_length: int, pack: bool = True
) -> PackedRows:
    """Place encoded transcripts into rows (first fit, longest first); one per row unless `pack`.

    Raises:
        ValueError: a transcript is longer than `max_length` (never cut: a cut answer teaches
            the model to stop mid-answer).
    """
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i][0]))
    rows: list[list[int]] = []
    used: list[int] = []
    for i in order:
        n = len(examples[i][0])
        if n > max_length:
            raise ValueError(f"a transcript has {n} tokens, more than sft.max_length={max_length}")
        slot = next((r for r, u in enumerate(used) if pack and u + n <= max_length), None)
        if slot is None:
            rows.append([])
            used.append(0)
            slot = len(rows) - 1
        rows[slot].append(i)
        used[slot] += n
    L = max(used)
    shape = (len(rows), L)
    tokens, mask = torch.zeros(shape, dtype=torch.long), torch.zeros(shape)
    segments, positions = torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.long)
    for r, members in enumerate(rows):
        at = 0
        for seg, i in enumerate(members, 1):
            ids, m = examples[i]
            n = len(ids)
            tokens[r, at : at + n] = torch.tensor(ids)
            mask[r, at : at + n] = torch.tensor(m, dtype=torch.float32)
            mask[r, at] = 0.0  # nothing in the row predicts a segment's first token
            segments[r, at : at + n] = seg
            positions[r, at : at + n] = torch.arange(n)
            at += n
    return PackedRows(tokens, mask, segments, positions, torch.tensor(used))


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """The examples of optimizer step `step`: consecutive slices of a seeded permutation that is
    redrawn every pass over the data (a pure function of the step, so a resumed run continues
    with the same batches)."""
    start = step * batch_size
    out = []
    while len(out) < min(batch_size, n):
        epoch, offset = divmod(start + len(out), n)
        perm = list(range(n))
        random.Random(f"sft/{seed}/{epoch}").shuffle(perm)
        take = min(n - offset, batch_size - len(out))
        out += perm[offset : offset + take]
    return out
