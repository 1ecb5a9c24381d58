"""``POST /v1/chat/completions``: messages rendered with the model's chat template, answered in
vLLM's shapes, tool calls parsed in the model's own syntax.

The conversation is rendered with the tokenizer's chat template (``add_generation_prompt``) and
encoded without adding special tokens (the template writes them), as vLLM does. Templates
without a system role get system messages merged into the first user turn. Assistant messages
that carry ``tool_calls`` are written back in the model's syntax when the template itself does
not render ``tool_calls``.

Tools: with ``tools`` (and ``tool_choice`` "auto", the default), the answer is parsed with the
model's tool-call parser (`burnish.models.chat.ChatFormat.tool_parser`: hermes, llama3_json,
mistral or compact); valid calls become OpenAI ``tool_calls`` (the compact syntax's positional
arguments are named after the tool's parameters, in the order of its JSON schema), ``content``
keeps the text before the first call, and ``finish_reason`` is ``"tool_calls"``. A streamed
answer to a request with tools holds its text back until the end (then sends content and calls
in one delta), where vLLM's streaming parsers send calls piece by piece.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from burnish.envs.tool_calls import INVALID_CALL, POSITIONAL
from burnish.models.chat import merge_system, render
from burnish.models.generate import RowResult
from burnish.serve.engine import Sampling, cancel_when_closed
from burnish.serve.errors import ServeError, bad_request, error_body
from burnish.serve.outputs import TextRules, chat_logprobs, positions_of_row
from burnish.serve.protocol import ChatCompletionRequest, now, random_id, usage
from burnish.serve.state import ServerState
from burnish.types import ToolCall

__all__ = ["chat", "stream_chat"]

_CALL_START = {"hermes": "<tool_call>", "compact": "<call>", "mistral": "[TOOL_CALLS]"}
"""Where a parser's calls begin in the text (the content is what comes before)."""


@dataclass
class _Job:
    body: ChatCompletionRequest
    model: str
    adapter: str | None
    prompt: list[int]
    sampling: Sampling
    rules: TextRules
    parse_tools: bool
    id: str = field(default_factory=lambda: random_id("chatcmpl"))
    created: int = field(default_factory=now)


def prepare(state: ServerState, body: ChatCompletionRequest) -> _Job:
    """Check a chat request, render its conversation and resolve the engine's parameters.

    Raises:
        ServeError: unknown model (404), invalid parameters or a conversation the template
            refuses (400).
    """
    adapter = state.adapter_of(body.model)
    if body.top_logprobs is not None and not body.logprobs:
        raise bad_request("when using `top_logprobs`, `logprobs` must be set to true.")
    parse_tools = _tool_mode(state, body)
    prompt = _render(state, body)
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is None:
        max_tokens = state.max_model_len - len(prompt)
    state.check_prompt(prompt, max_tokens)
    logprobs = (body.top_logprobs or 0) if body.logprobs else 0
    sampling = state.sampling(body, max_tokens, logprobs)
    rules = TextRules(
        state.tokenizer, state.engine.stop_ids(sampling), sampling.stop_token_ids, sampling.stop,
        body.include_stop_str_in_output, body.skip_special_tokens,
    )  # fmt: skip
    return _Job(body, body.model or state.base_name, adapter, prompt, sampling, rules, parse_tools)


def _tool_mode(state: ServerState, body: ChatCompletionRequest) -> bool:
    """Whether to parse tool calls out of the answer."""
    if not body.tools:
        return False
    choice = body.tool_choice if body.tool_choice is not None else "auto"
    if choice == "none":
        return False
    if choice != "auto":
        raise bad_request(
            f"burnish serve supports tool_choice 'auto' and 'none', got {choice!r}",
            param="tool_choice",
        )
    if state.chat.tool_parser is None:
        raise bad_request(
            '"auto" tool choice needs a model whose chat template renders tool results; this '
            "model's does not",
            param="tool_choice",
        )
    return True


def _render(state: ServerState, body: ChatCompletionRequest) -> list[int]:
    fmt = state.chat
    template = str(getattr(state.tokenizer, "chat_template", "") or "")
    messages = [_message(m, fmt.tool_parser, "tool_calls" in template) for m in body.messages]
    if not fmt.system_role:
        messages = merge_system(messages)
    kwargs = {**fmt.template_kwargs, **(body.chat_template_kwargs or {})}
    try:
        text = render(
            state.tokenizer, messages, body.add_generation_prompt, body.tools or (), kwargs
        )
    except Exception as e:
        # jinja2's TemplateError (a template's raise_exception) is the client's message
        # problem, as are bad message fields; anything else is ours
        template = any(cls.__name__ == "TemplateError" for cls in type(e).__mro__)
        if not (template or isinstance(e, (TypeError, KeyError, ValueError))):
            raise
        raise bad_request(f"the chat template cannot render these messages: {e}") from e
    return list(state.tokenizer.encode(text, add_special_tokens=False))


def _message(m: dict[str, Any], parser: Any, template_has_calls: bool) -> dict[str, Any]:
    """A request message as the template should see it (text parts joined, tool-call
    arguments decoded, calls written in the model's syntax if the template cannot)."""
    if "role" not in m:
        raise bad_request("every message needs a 'role'", param="messages")
    out = dict(m)
    content = m.get("content")
    if isinstance(content, list):
        out["content"] = "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    elif content is None:
        out["content"] = ""
    calls = m.get("tool_calls") or []
    if calls:
        decoded = [_decoded_call(c) for c in calls]
        out["tool_calls"] = [
            {**c, "function": {**c["function"], "arguments": d.arguments}}
            for c, d in zip(calls, decoded, strict=True)
        ]
        if not template_has_calls and parser is not None:
            out["content"] = out["content"] + parser.format(tuple(decoded))
    return out


def _decoded_call(call: dict[str, Any]) -> ToolCall:
    try:
        fn = call["function"]
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        return ToolCall(name=fn["name"], arguments=args, id=call.get("id", ""))
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        raise bad_request(f"malformed tool call in messages: {call!r:.200}", "messages") from e


# ---- answers ------------------------------------------------------------------------------


def _tool_calls(state: ServerState, job: _Job, text: str) -> tuple[str | None, list[dict]]:
    """``(content, tool_calls)`` of an answer (calls only when tools are parsed and valid)."""
    parser = state.chat.tool_parser
    if not job.parse_tools or parser is None:
        return text, []
    calls = [c for c in parser.parse(text) if c.name != INVALID_CALL]
    if not calls:
        return text, []
    marker = _CALL_START.get(parser.name)
    content = text[: text.find(marker)] if marker and marker in text else ""
    schemas = {
        t.get("function", {}).get("name"): t.get("function", {}) for t in job.body.tools or []
    }
    out = [
        {
            "id": f"chatcmpl-tool-{secrets.token_hex(8)}",
            "type": "function",
            "function": {
                "name": c.name,
                "arguments": json.dumps(_named_arguments(c, schemas.get(c.name))),
            },
        }
        for c in calls
    ]
    return (content if content.strip() else None), out


def _named_arguments(call: ToolCall, schema: dict | None) -> dict[str, Any]:
    """Arguments as a JSON object: positional ones named after the schema's parameters."""
    args = dict(call.arguments)
    positional = args.pop(POSITIONAL, None)
    if positional is None:
        return args
    names = list(((schema or {}).get("parameters") or {}).get("properties") or {})
    if len(names) < len(positional):
        return {POSITIONAL: positional, **args}
    return {**dict(zip(names, positional)), **args}


def _message_out(content: str | None, calls: list[dict]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
        "tool_calls": calls,
        "reasoning": None,
    }


def _finish(res: RowResult, calls: list[dict]) -> str:
    return "tool_calls" if calls and res.finish_reason == "stop" else res.finish_reason


async def chat(state: ServerState, body: ChatCompletionRequest) -> dict[str, Any]:
    """The whole (non-streamed) ``chat.completion`` response."""
    job = prepare(state, body)
    (out,) = await state.engine.generate([job.prompt], job.sampling, job.adapter)
    choices = []
    for i, res in enumerate(out.rows):
        text, stop_reason = job.rules.render(res.tokens, final=True)
        content, calls = _tool_calls(state, job, text)
        choices.append(
            {
                "index": i,
                "message": _message_out(content, calls),
                "logprobs": _logprobs(state, job, res.tokens, res.logprobs, res.top_logprobs),
                "finish_reason": _finish(res, calls),
                "stop_reason": stop_reason,
                "token_ids": list(res.tokens) if body.return_token_ids else None,
            }
        )
    return {
        "id": job.id,
        "object": "chat.completion",
        "created": job.created,
        "model": job.model,
        "choices": choices,
        "service_tier": None,
        "system_fingerprint": None,
        "usage": usage(len(job.prompt), sum(len(r.tokens) for r in out.rows)),
        "prompt_logprobs": None,
        "prompt_token_ids": list(job.prompt) if body.return_token_ids else None,
    }


def _logprobs(state: ServerState, job: _Job, tokens, logprobs, tops) -> dict | None:
    if not job.body.logprobs:
        return None
    positions = positions_of_row(list(tokens), list(logprobs), list(tops))
    return chat_logprobs(
        positions, job.body.top_logprobs or 0, state.tokenizer, job.body.return_tokens_as_token_ids
    )


# ---- streaming ----------------------------------------------------------------------------


async def stream_chat(state: ServerState, body: ChatCompletionRequest) -> AsyncIterator[str]:
    """The server-sent ``chat.completion.chunk`` events of a streamed answer (checks happen
    before the first event)."""
    job = prepare(state, body)
    task, queue = state.engine.start_stream([job.prompt], job.sampling, job.adapter)
    return cancel_when_closed(task, _events(state, job, task, queue))


async def _events(state: ServerState, job: _Job, task: asyncio.Future, queue) -> AsyncIterator[str]:
    n = job.sampling.n
    ids = list(job.prompt) if job.body.return_token_ids else None
    for i in range(n):  # the role first, for every choice
        yield _sse(_frame(job, _delta(i, {"role": "assistant", "content": ""}), prompt_ids=ids))
        ids = None
    tokens: list[list[int]] = [[] for _ in range(n)]
    sent = [""] * n
    while (event := await queue.get()) is not None:
        i, token, logprob, top = event
        tokens[i].append(token)
        text, _ = job.rules.render(tokens[i], final=False)
        delta = "" if job.parse_tools else _advance(sent, i, text)
        lp = _logprobs(state, job, [token], [logprob], [top])
        if delta or lp is not None:
            yield _sse(_frame(job, _delta(i, {"content": delta}, lp)))
    try:
        (out,) = task.result()
    except Exception as e:  # noqa: BLE001 - vLLM reports failures inside the stream
        yield _sse(
            e.body()
            if isinstance(e, ServeError)
            else error_body(str(e), "InternalServerError", 500)
        )
        yield "data: [DONE]\n\n"
        return
    for i, res in enumerate(out.rows):
        text, stop_reason = job.rules.render(res.tokens, final=True)
        delta: dict[str, Any] = {}
        calls: list[dict] = []
        if job.parse_tools:
            content, calls = _tool_calls(state, job, text)
            if content:
                delta["content"] = content
            if calls:
                delta["tool_calls"] = [{"index": k, **c} for k, c in enumerate(calls)]
        elif rest := _advance(sent, i, text):
            delta["content"] = rest
        choice = _delta(i, delta, None, _finish(res, calls), stop_reason)
        choice["token_ids"] = None
        yield _sse(_frame(job, choice))
    if job.body.stream_options is not None and job.body.stream_options.include_usage:
        done = usage(len(job.prompt), sum(len(r.tokens) for r in out.rows))
        yield _sse({**_frame(job, None), "choices": [], "usage": done})
    yield "data: [DONE]\n\n"


def _advance(sent: list[str], i: int, text: str) -> str:
    """The new text of choice ``i`` beyond what it sent (and remember it as sent)."""
    delta = text[len(sent[i]) :] if text.startswith(sent[i]) else ""
    sent[i] += delta
    return delta


def _delta(
    index: int,
    delta: dict[str, Any],
    logprobs: dict | None = None,
    finish: str | None = None,
    stop_reason: str | int | None = None,
) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    if finish is not None:
        choice["stop_reason"] = stop_reason
    return choice


def _frame(job: _Job, choice: dict | None, prompt_ids: list[int] | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "id": job.id,
        "object": "chat.completion.chunk",
        "created": job.created,
        "model": job.model,
        "choices": [choice] if choice is not None else [],
    }
    if prompt_ids is not None:
        frame["prompt_token_ids"] = prompt_ids
    return frame


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\n\n"
