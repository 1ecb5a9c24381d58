"""From sampled tokens to what vLLM answers: choice text, stop reasons and log-prob shapes.

Text follows vLLM's detokenizer:

- a completion that ended on a stop token (EOS, the template's end of turn, a client's
  ``stop_token_ids``) keeps the token in its token ids but not in its text, unless
  ``include_stop_str_in_output``;
- one that ended on a stop string is cut before the string (after it with
  ``include_stop_str_in_output``); the token that completed it stays in the token ids;
- ``stop_reason`` is the stop string or the stop token's id, None for the tokenizer's EOS and for
  completions that ran out of tokens.

While streaming, text that could still turn out to be the start of a stop string is held back
(vLLM holds back the longest stop string's length minus one characters), and so is a trailing
incomplete UTF-8 character (decoded as U+FFFD).

Log-probs: vLLM keeps, per position, a dict of the sampled (or prompt) token first and then the
``k`` most likely tokens, one entry per token id. The completions API writes the first ``k + 1``
entries as ``{decoded token: logprob}`` (``top_logprobs``); the chat API writes the first ``k``
entries as ``top_logprobs`` (so the sampled token is always first there). ``-inf`` is written as
``-9999.0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from burnish.serve.scoring import PromptPosition

__all__ = [
    "Position",
    "TextRules",
    "chat_logprobs",
    "completion_logprobs",
    "positions_of_prompt",
    "positions_of_row",
    "prompt_logprobs_json",
    "token_text",
]

_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Position:
    """One token with its log-prob and its alternatives, as a log-prob shape needs it."""

    token: int
    logprob: float | None
    """None for a prompt's first token (nothing predicts it)."""
    top: tuple[tuple[int, float], ...] = ()


def _clamp(x: float) -> float:
    return max(x, -9999.0) if not math.isnan(x) else x


def token_text(tokenizer: Any, token: int, as_id: bool) -> str:
    """A token as vLLM writes it in log-probs: ``"token_id:N"`` or the token decoded alone."""
    return f"token_id:{token}" if as_id else tokenizer.decode([token])


def _entries(p: Position) -> list[tuple[int, float]]:
    """vLLM's per-position dict as a list: the token first, then its alternatives, one entry
    per token id."""
    seen, out = set(), []
    for tok, lp in ((p.token, p.logprob if p.logprob is not None else 0.0), *p.top):
        if tok not in seen:
            seen.add(tok)
            out.append((tok, lp))
    return out


def positions_of_row(tokens: list[int], logprobs: list[float], tops: list) -> list[Position]:
    """`Position`s of a sampled completion (``tops`` may be empty)."""
    return [
        Position(t, lp, tuple(tops[i]) if i < len(tops) else ())
        for i, (t, lp) in enumerate(zip(tokens, logprobs, strict=True))
    ]


def positions_of_prompt(prompt: list[int], scored: list[PromptPosition]) -> list[Position]:
    """`Position`s of a scored prompt: the first token without a log-prob."""
    return [Position(prompt[0], None)] + [Position(p.token, p.logprob, p.top) for p in scored]


def completion_logprobs(
    positions: list[Position], k: int, tokenizer: Any, as_id: bool, offset: int = 0
) -> dict[str, list]:
    """The completions API's legacy ``logprobs`` object: ``text_offset``, ``token_logprobs``,
    ``tokens`` and ``top_logprobs`` (``k + 1`` entries per position), offsets from ``offset``."""
    out: dict[str, list] = {
        "text_offset": [],
        "token_logprobs": [],
        "tokens": [],
        "top_logprobs": [],
    }
    for p in positions:
        text = token_text(tokenizer, p.token, as_id)
        out["text_offset"].append(offset)
        offset += len(text)
        out["tokens"].append(text)
        if p.logprob is None:
            out["token_logprobs"].append(None)
            out["top_logprobs"].append(None)
            continue
        out["token_logprobs"].append(_clamp(p.logprob))
        out["top_logprobs"].append(
            {token_text(tokenizer, t, as_id): _clamp(lp) for t, lp in _entries(p)[: k + 1]}
        )
    return out


def chat_logprobs(
    positions: list[Position], k: int, tokenizer: Any, as_id: bool
) -> dict[str, list[dict]]:
    """The chat API's ``logprobs``: ``{"content": [{token, logprob, bytes, top_logprobs}]}``."""

    def entry(t: int, lp: float) -> dict[str, Any]:
        text = token_text(tokenizer, t, as_id)
        return {
            "token": text,
            "logprob": _clamp(lp),
            "bytes": list(text.encode("utf-8", "replace")),
        }

    content = []
    for p in positions:
        item = entry(p.token, p.logprob if p.logprob is not None else -9999.0)
        item["top_logprobs"] = [entry(t, lp) for t, lp in _entries(p)[:k]]
        content.append(item)
    return {"content": content}


def prompt_logprobs_json(
    prompt: list[int], scored: list[PromptPosition], tokenizer: Any
) -> list[dict[str, dict] | None]:
    """vLLM's ``prompt_logprobs``: None for the first token, then per position a dict keyed by
    token id (a string in JSON) -> ``{"logprob", "rank", "decoded_token"}``, the prompt's own
    token first and then the ``k`` most likely ones (ranks 1..k)."""
    out: list[dict[str, dict] | None] = [None]
    for p in scored:
        entry = {str(p.token): _logprob_json(p.token, p.logprob, p.rank, tokenizer)}
        for rank, (t, lp) in enumerate(p.top, 1):
            entry.setdefault(str(t), _logprob_json(t, lp, rank, tokenizer))
        out.append(entry)
    assert len(out) == len(prompt), (len(out), len(prompt))
    return out


def _logprob_json(token: int, logprob: float, rank: int, tokenizer: Any) -> dict[str, Any]:
    return {"logprob": _clamp(logprob), "rank": rank, "decoded_token": tokenizer.decode([token])}


class TextRules:
    """How one request turns a completion's tokens into text (see the module docstring).

    Args:
        tokenizer: the model's tokenizer.
        end_ids: tokens that always stop (the engine's end-of-turn ids).
        stop_token_ids: the client's stop tokens.
        stop: the client's stop strings.
        include_stop: ``include_stop_str_in_output``.
        skip_special: ``skip_special_tokens``.
    """

    def __init__(
        self,
        tokenizer: Any,
        end_ids: frozenset[int],
        stop_token_ids: tuple[int, ...],
        stop: tuple[str, ...],
        include_stop: bool,
        skip_special: bool,
    ) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(end_ids) | frozenset(stop_token_ids)
        self.eos = tokenizer.eos_token_id
        self.stop = stop
        self.include_stop = include_stop
        self.skip_special = skip_special
        self.holdback = max((len(s) for s in stop), default=1) - 1 if not include_stop else 0

    def render(self, tokens: list[int], final: bool) -> tuple[str, str | int | None]:
        """``(text, stop_reason)`` of a completion's tokens so far; ``final=False`` holds back
        text a stream must not show yet."""
        stop_token = bool(tokens) and tokens[-1] in self.stop_ids
        body = tokens[:-1] if stop_token and not self.include_stop else tokens
        text = self.tokenizer.decode(body, skip_special_tokens=self.skip_special)
        if stop_token:
            return text, None if tokens[-1] == self.eos else tokens[-1]
        hit = self._stop_hit(text)
        if hit is not None:
            s, start = hit
            return (text[: start + len(s)] if self.include_stop else text[:start]), s
        if not final:
            if self.stop and self.holdback:
                text = text[: max(0, len(text) - self.holdback)]
            text = text.rstrip(_REPLACEMENT)
        return text, None

    def _stop_hit(self, text: str) -> tuple[str, int] | None:
        """The stop string that completes earliest in the text and where it starts."""
        best: tuple[int, str, int] | None = None
        for s in self.stop:
            i = text.find(s)
            if i >= 0 and (best is None or i + len(s) < best[0]):
                best = (i + len(s), s, i)
        return None if best is None else (best[1], best[2])
