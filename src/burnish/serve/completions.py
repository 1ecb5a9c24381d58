"""``POST /v1/completions``: prompts as text or token ids, answered in vLLM's shapes.

One engine request per HTTP request (all its prompts, ``n`` completions each, batched with
everything else in flight). Choice ``i * n + j`` is completion ``j`` of prompt ``i``. With
``stream``, every sampled token becomes a server-sent event as soon as the engine samples it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from burnish.models.generate import RowResult
from burnish.serve.engine import PromptOutput, Sampling, cancel_when_closed
from burnish.serve.errors import ServeError, error_body
from burnish.serve.outputs import (
    Position,
    TextRules,
    completion_logprobs,
    positions_of_prompt,
    positions_of_row,
    prompt_logprobs_json,
)
from burnish.serve.protocol import CompletionRequest, now, random_id, usage
from burnish.serve.state import ServerState

__all__ = ["complete", "stream_completion"]


@dataclass
class _Job:
    """One completions request, resolved: its prompts, parameters and text rules."""

    body: CompletionRequest
    model: str
    adapter: str | None
    prompts: list[tuple[list[int], str | None]]
    sampling: Sampling
    rules: TextRules
    id: str = field(default_factory=lambda: random_id("cmpl"))
    created: int = field(default_factory=now)


def prepare(state: ServerState, body: CompletionRequest) -> _Job:
    """Check a completions request and resolve what the engine must do for it.

    Raises:
        ServeError: unknown model (404) or invalid parameters (400).
    """
    adapter = state.adapter_of(body.model)
    prompts = state.completion_prompts(body)
    max_tokens = body.max_tokens
    if max_tokens is None:  # vLLM: whatever the context leaves
        max_tokens = state.max_model_len - max(len(p) for p, _ in prompts)
    for p, _ in prompts:
        state.check_prompt(p, max_tokens)
    prompt_lp = body.prompt_logprobs
    if prompt_lp is None and body.echo and body.logprobs is not None:
        prompt_lp = body.logprobs  # echoed tokens carry log-probs too
    sampling = state.sampling(body, max_tokens, body.logprobs or 0, prompt_lp)
    rules = TextRules(
        state.tokenizer, state.engine.stop_ids(sampling), sampling.stop_token_ids, sampling.stop,
        body.include_stop_str_in_output, body.skip_special_tokens,
    )  # fmt: skip
    return _Job(body, body.model or state.base_name, adapter, prompts, sampling, rules)


async def complete(state: ServerState, body: CompletionRequest) -> dict[str, Any]:
    """The whole (non-streamed) ``text_completion`` response."""
    job = prepare(state, body)
    outputs = await state.engine.generate([p for p, _ in job.prompts], job.sampling, job.adapter)
    choices, completion_tokens = [], 0
    for (prompt, text), out in zip(job.prompts, outputs, strict=True):
        for res in _rows(out, job.sampling.n):
            choices.append(_choice(state, job, len(choices), prompt, text, out, res))
            completion_tokens += len(res.tokens)
    return {
        "id": job.id,
        "object": "text_completion",
        "created": job.created,
        "model": job.model,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": usage(sum(len(p) for p, _ in job.prompts), completion_tokens),
    }


def _rows(out: PromptOutput, n: int) -> list[RowResult]:
    """The prompt's completions (empty ones when ``max_tokens`` was 0)."""
    return out.rows or [RowResult() for _ in range(n)]


def _choice(
    state: ServerState,
    job: _Job,
    index: int,
    prompt: list[int],
    prompt_text: str | None,
    out: PromptOutput,
    res: RowResult,
) -> dict[str, Any]:
    body, tok = job.body, state.tokenizer
    text, stop_reason = job.rules.render(res.tokens, final=True)
    positions = positions_of_row(res.tokens, res.logprobs, res.top_logprobs)
    if body.echo:
        echoed = "" if body.return_token_ids else _prompt_text(tok, prompt, prompt_text)
        text = echoed + text
        positions = _prompt_positions(prompt, out) + positions
    return {
        "index": index,
        "text": text,
        "logprobs": _logprobs(state, job, positions),
        "finish_reason": res.finish_reason,
        "stop_reason": stop_reason,
        "token_ids": list(res.tokens) if body.return_token_ids else None,
        "prompt_logprobs": (
            prompt_logprobs_json(prompt, out.prompt_logprobs, tok)
            if out.prompt_logprobs is not None
            else None
        ),
        "prompt_token_ids": list(prompt) if body.return_token_ids else None,
    }


def _prompt_text(tokenizer: Any, prompt: list[int], text: str | None) -> str:
    return text if text is not None else tokenizer.decode(prompt)


def _prompt_positions(prompt: list[int], out: PromptOutput) -> list[Position]:
    if out.prompt_logprobs is None:  # echo without logprobs: the tokens only
        return [Position(t, None) for t in prompt]
    return positions_of_prompt(prompt, out.prompt_logprobs)


def _logprobs(
    state: ServerState, job: _Job, positions: list[Position], offset: int = 0
) -> dict | None:
    if job.body.logprobs is None:
        return None
    return completion_logprobs(
        positions, job.body.logprobs, state.tokenizer, job.body.return_tokens_as_token_ids, offset
    )


# ---- streaming ----------------------------------------------------------------------------


@dataclass
class _Stream:
    """What one streamed choice has sent so far."""

    prompt: int
    tokens: list[int] = field(default_factory=list)
    sent: str = ""
    offset: int = 0
    started: bool = False


async def stream_completion(state: ServerState, body: CompletionRequest) -> AsyncIterator[str]:
    """The server-sent events of a streamed completion (checks happen before the first event:
    `prepare` raises, so errors are ordinary HTTP errors)."""
    job = prepare(state, body)
    task, queue = state.engine.start_stream([p for p, _ in job.prompts], job.sampling, job.adapter)
    return cancel_when_closed(task, _events(state, job, task, queue))


async def _events(state: ServerState, job: _Job, task: asyncio.Future, queue) -> AsyncIterator[str]:
    n = job.sampling.n
    streams = [_Stream(prompt=c // n) for c in range(len(job.prompts) * n)]
    while (event := await queue.get()) is not None:
        choice, token, logprob, top = event
        st = streams[choice]
        st.tokens.append(token)
        text, _ = job.rules.render(st.tokens, final=False)
        positions = [Position(token, logprob, tuple(top))]
        yield _sse(_chunk(state, job, choice, st, text, positions, None, None))
    try:
        outputs: list[PromptOutput] = task.result()
    except Exception as e:  # noqa: BLE001 - vLLM reports failures inside the stream
        yield _sse(_stream_error(e))
        yield "data: [DONE]\n\n"
        return
    completion_tokens = 0
    for choice, st in enumerate(streams):
        out = outputs[st.prompt]
        res = _rows(out, n)[choice % n]
        completion_tokens += len(res.tokens)
        text, stop_reason = job.rules.render(res.tokens, final=True)
        yield _sse(_chunk(state, job, choice, st, text, [], res.finish_reason, stop_reason))
    if job.body.stream_options is not None and job.body.stream_options.include_usage:
        prompt_tokens = sum(len(p) for p, _ in job.prompts)
        yield _sse(_frame(job, [], usage(prompt_tokens, completion_tokens)))
    yield "data: [DONE]\n\n"


def _chunk(
    state: ServerState,
    job: _Job,
    index: int,
    st: _Stream,
    text: str,
    positions: list[Position],
    finish: str | None,
    stop_reason: str | int | None,
) -> dict[str, Any]:
    """One choice's next event: the text it can show now beyond what it sent."""
    body = job.body
    delta = text[len(st.sent) :] if text.startswith(st.sent) else ""
    st.sent = st.sent + delta
    new_tokens = [p.token for p in positions]
    prompt_ids = None
    if not st.started:  # the first event of a choice echoes the prompt and its ids
        st.started = True
        prompt, prompt_text = job.prompts[st.prompt]
        prompt_ids = list(prompt) if body.return_token_ids else None
        if body.echo:
            delta = (
                "" if body.return_token_ids else _prompt_text(state.tokenizer, prompt, prompt_text)
            ) + delta
            positions = [Position(t, None) for t in prompt] + positions
    logprobs = _logprobs(state, job, positions, st.offset)
    if logprobs is not None and logprobs["tokens"]:
        st.offset = logprobs["text_offset"][-1] + len(logprobs["tokens"][-1])
    choice = {
        "index": index,
        "text": delta,
        "logprobs": logprobs,
        "finish_reason": finish,
        "stop_reason": stop_reason,
        "prompt_token_ids": prompt_ids,
        "token_ids": new_tokens if body.return_token_ids else None,
    }
    return _frame(job, [choice])


def _frame(job: _Job, choices: list[dict], usage_block: dict | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "id": job.id,
        "object": "text_completion",
        "created": job.created,
        "model": job.model,
        "choices": choices,
    }
    if usage_block is not None:
        frame["usage"] = usage_block
    return frame


def _stream_error(e: Exception) -> dict[str, Any]:
    if isinstance(e, ServeError):
        return e.body()
    return error_body(str(e), "InternalServerError", 500)


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"
