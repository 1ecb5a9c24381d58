"""Tool-call syntax: parse calls out of assistant text, and write calls as text.

Four syntaxes:

- `HermesToolParser` (`hermes`), the one Qwen, Hermes and most open chat models are trained on:
  `<tool_call>{"name": "calculator", "arguments": {"expression": "12*7"}}</tool_call>`.
- `LlamaJsonToolParser` (`llama3_json`), Llama 3.x's custom-tool format: the whole message is one
  JSON object `{"name": "calculator", "parameters": {"expression": "12*7"}}` (optionally after
  `<|python_tag|>`; several calls are separated by `;`).
- `MistralToolParser` (`mistral`), Mistral-Instruct v0.3's: `[TOOL_CALLS] [{"name": ...,
  "arguments": {...}, "id": "a1b2c3d4e"}]`, ids of 9 letters and digits (its template refuses
  tool results without one).
- `CompactToolParser` (`compact`), for the burnish character tokenizer, short enough for a
  1M-parameter model to learn: `<call>calculator(12*7)</call>`. The text between the
  parentheses is split on top-level commas into positional arguments, which the tool binds in
  the order of its parameters (under the key `POSITIONAL`). No quoting: an argument cannot
  contain a top-level comma.

A call the model wrote but that cannot be read (bad JSON, no name) becomes a `ToolCall` named
`INVALID_CALL` carrying the raw text and the reason, so the environment can answer with an error
message: a malformed call is the model's mistake, not an infrastructure failure.
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

from burnish.types import ToolCall

POSITIONAL = "__positional__"
"""Argument key holding a list of positional argument strings (compact syntax)."""
INVALID_CALL = "<invalid>"
"""Name of the `ToolCall` standing for a call that could not be parsed."""


class ToolCallParser(Protocol):
    name: str

    def parse(self, text: str) -> tuple[ToolCall, ...]:
        """All tool calls in an assistant message, in order (empty when there are none)."""
        ...

    def format(self, calls: tuple[ToolCall, ...]) -> str:
        """Assistant text that `parse` reads back as `calls`."""
        ...


def _invalid(raw: str, reason: str, index: int) -> ToolCall:
    return ToolCall(name=INVALID_CALL, arguments={"raw": raw, "error": reason}, id=f"call_{index}")


class HermesToolParser:
    """`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (JSON inside the tags)."""

    name = "hermes"
    _pattern = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

    def parse(self, text: str) -> tuple[ToolCall, ...]:
        calls = []
        for i, match in enumerate(self._pattern.finditer(text)):
            raw = match.group(1)
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                calls.append(_invalid(raw, f"invalid JSON: {e.msg}", i))
                continue
            calls.append(_json_call(obj, ("arguments",), raw, i))
        return tuple(calls)

    def format(self, calls: tuple[ToolCall, ...]) -> str:
        return "".join(
            "<tool_call>\n"
            + json.dumps({"name": c.name, "arguments": dict(c.arguments)}, ensure_ascii=False)
            + "\n</tool_call>"
            for c in calls
        )


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        depth += (ch == "(") - (ch == ")")
        current.append(ch)
    parts.append("".join(current).strip())
    return [] if parts == [""] else parts


class CompactToolParser:
    """`<call>name(arg, arg)</call>`: the short syntax of the burnish character tokenizer."""

    name = "compact"
    _pattern = re.compile(r"<call>(.*?)</call>", re.DOTALL)
    _call = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\((.*)\)\s*$", re.DOTALL)

    def parse(self, text: str) -> tuple[ToolCall, ...]:
        calls = []
        for i, match in enumerate(self._pattern.finditer(text)):
            raw = match.group(1)
            m = self._call.match(raw)
            if m is None:
                calls.append(_invalid(raw, "expected name(arguments)", i))
                continue
            args = {POSITIONAL: _split_top_level(m.group(2))}
            calls.append(ToolCall(name=m.group(1), arguments=args, id=f"call_{i}"))
        return tuple(calls)

    def format(self, calls: tuple[ToolCall, ...]) -> str:
        out = []
        for c in calls:
            values: list[Any] = []
            for key, value in c.arguments.items():
                values += list(value) if key == POSITIONAL else [value]
            out.append(f"<call>{c.name}({', '.join(str(v) for v in values)})</call>")
        return "".join(out)


def _json_call(obj: Any, args_keys: tuple[str, ...], raw: str, index: int) -> ToolCall:
    """A `ToolCall` from a decoded JSON object with a name and arguments under `args_keys`."""
    args = None
    if isinstance(obj, dict):
        args = next((obj[k] for k in args_keys if k in obj), {})
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = None
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("name"), str)
        or not isinstance(args, dict)
    ):
        keys = " or ".join(repr(k) for k in args_keys)
        return _invalid(raw, f"expected an object with a string 'name' and {keys}", index)
    call_id = obj.get("id") if isinstance(obj.get("id"), str) else f"call_{index}"
    return ToolCall(name=obj["name"], arguments=args, id=call_id)


class LlamaJsonToolParser:
    """`{"name": ..., "parameters": {...}}` as the whole message (Llama 3.x custom tools)."""

    name = "llama3_json"
    _tag = "<|python_tag|>"

    def parse(self, text: str) -> tuple[ToolCall, ...]:
        body = text.strip()
        if body.startswith(self._tag):
            body = body[len(self._tag) :].strip()
        elif not re.match(r'\{\s*"name"', body):
            return ()  # a plain answer: Llama's calls have no delimiters of their own
        calls = []
        for i, raw in enumerate(p.strip() for p in body.split(";") if p.strip()):
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                calls.append(_invalid(raw, f"invalid JSON: {e.msg}", i))
                continue
            calls.append(_json_call(obj, ("parameters", "arguments"), raw, i))
        return tuple(calls)

    def format(self, calls: tuple[ToolCall, ...]) -> str:
        return "; ".join(
            json.dumps({"name": c.name, "parameters": dict(c.arguments)}, ensure_ascii=False)
            for c in calls
        )


def mistral_call_id(index: int) -> str:
    """A Mistral tool-call id (9 letters and digits) for the `index`-th call of a message."""
    return f"call{index:05d}"


class MistralToolParser:
    """`[TOOL_CALLS] [{"name": ..., "arguments": {...}, "id": ...}, ...]` (Mistral v0.3)."""

    name = "mistral"
    _tag = "[TOOL_CALLS]"

    def parse(self, text: str) -> tuple[ToolCall, ...]:
        if self._tag not in text:
            return ()
        raw = text.split(self._tag, 1)[1].strip()
        try:
            objs = json.loads(raw)
        except json.JSONDecodeError as e:
            return (_invalid(raw, f"invalid JSON: {e.msg}", 0),)
        if isinstance(objs, dict):
            objs = [objs]
        if not isinstance(objs, list):
            return (_invalid(raw, "expected a JSON list of calls", 0),)
        return tuple(_json_call(o, ("arguments",), json.dumps(o), i) for i, o in enumerate(objs))

    def format(self, calls: tuple[ToolCall, ...]) -> str:
        items = []
        for i, c in enumerate(calls):
            call_id = c.id if re.fullmatch(r"[A-Za-z0-9]{9}", c.id or "") else mistral_call_id(i)
            items.append({"name": c.name, "arguments": dict(c.arguments), "id": call_id})
        return f"{self._tag} {json.dumps(items, ensure_ascii=False)}"


HERMES = HermesToolParser()
COMPACT = CompactToolParser()
LLAMA_JSON = LlamaJsonToolParser()
MISTRAL = MistralToolParser()
PARSERS: dict[str, ToolCallParser] = {p.name: p for p in (HERMES, LLAMA_JSON, MISTRAL, COMPACT)}
"""The tool-call syntaxes by name (`model.tool_format` takes these and "auto")."""


def get_parser(name: str) -> ToolCallParser:
    if name not in PARSERS:
        raise ValueError(f"unknown tool-call parser {name!r}; available: {', '.join(PARSERS)}")
    return PARSERS[name]


def parser_for(tokenizer: Any) -> ToolCallParser:
    """The tool-call syntax a tokenizer's model is expected to use.

    A tokenizer may name its syntax in a `burnish_tool_parser` attribute (the burnish character
    tokenizer uses `compact`); otherwise the chat template decides: `<tool_call>` means Hermes,
    `[TOOL_CALLS]` Mistral, a `"parameters"` JSON instruction with Llama's header tokens
    `llama3_json`, and the burnish `<|role|>` style compact. Hermes is the default.
    """
    named = getattr(tokenizer, "burnish_tool_parser", None)
    if named:
        return get_parser(named)
    template = getattr(tokenizer, "chat_template", None) or ""
    if not isinstance(template, str):
        template = json.dumps(template)
    if "<tool_call>" in template:
        return HERMES
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if '"parameters"' in template and "<|start_header_id|>" in template:
        return LLAMA_JSON
    if "<|assistant|>" in template and "<|end|>" in template:
        return COMPACT
    return HERMES
