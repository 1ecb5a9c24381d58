"""Tool-use environments: tools are typed Python functions.

A tool's JSON schema (the OpenAI `{"type": "function", "function": {...}}` form that chat
templates accept) comes from its type hints and its Google-style docstring: the summary line is
the description and the `Args:` section describes each parameter.

`ToolEnv.step` runs the tool calls of an assistant message (parsed by the framework) with a
timeout and answers with one tool message per call; an assistant message without tool calls is
the final answer and ends the episode.

Failures, and who they belong to. A tool runs on input the model chose, so whatever goes wrong
inside it is the tool's answer to that input and goes back to the model as a tool message
starting with "error:": an unknown tool, wrong arguments, a `ToolError` (bad input, said
plainly), any other exception the tool raises (`OverflowError`, `KeyError` ...: named with its
type), and a timeout (a tool call past `timeout_s`: an input can be made slow on purpose). The
episode goes on and is scored. Were these "infrastructure" failures, the episode would be
unscorable, and a policy could turn a wrong answer into no gradient at all by breaking a tool.

The one exception that ends the episode as an error (`StopReason.ERROR`, unscored) is
`ToolInfrastructureError`, which a tool raises when the failure is not the model's doing (its
sandbox or service is down); `BaseException`s (cancellation, KeyboardInterrupt) propagate too.
A synchronous tool runs in a worker thread that cannot be stopped: after a timeout it may run on
in the background, its result unused.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

from burnish.envs.base import BaseEnv, assistant_texts, checked_score
from burnish.envs.tool_calls import INVALID_CALL, POSITIONAL
from burnish.types import Message, Score, StepResult, Task, ToolCall, Trajectory

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


class ToolError(Exception):
    """Raised by a tool for bad input; the message goes back to the model as the tool's output."""


class ToolInfrastructureError(RuntimeError):
    """Raised by a tool whose failure is not the model's doing (its sandbox or service is down):
    the episode is recorded as an error and left unscored."""


MAX_ERROR_CHARS = 1000
"""Longest error text a tool message carries (a longer one is cut)."""


def _error_text(text: str) -> str:
    text = f"error: {text}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _docstring_args(doc: str) -> dict[str, str]:
    """Parameter descriptions from the `Args:` section of a Google-style docstring."""
    out: dict[str, str] = {}
    in_args, current = False, None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args and re.match(r"^[A-Z][A-Za-z ]*:$", stripped):
            break
        if not in_args or not stripped:
            continue
        m = re.match(r"^(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
        if m:
            current = m.group(1)
            out[current] = m.group(3)
        elif current:
            out[current] += " " + stripped
    return out


def tool_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of a tool function, from its type hints and docstring.

    Raises:
        TypeError: a parameter has no type hint, or one that has no JSON type.
    """
    hints = typing.get_type_hints(fn)
    doc = inspect.getdoc(fn) or ""
    arg_docs = _docstring_args(doc)
    properties: dict[str, Any] = {}
    required = []
    for name, param in inspect.signature(fn).parameters.items():
        if name not in hints:
            raise TypeError(f"tool {fn.__name__!r}: parameter {name!r} needs a type hint")
        json_type = _JSON_TYPES.get(typing.get_origin(hints[name]) or hints[name])
        if json_type is None:
            raise TypeError(
                f"tool {fn.__name__!r}: parameter {name!r} has type {hints[name]!r}; "
                f"allowed: {', '.join(t.__name__ for t in _JSON_TYPES)}"
            )
        properties[name] = {"type": json_type}
        if name in arg_docs:
            properties[name]["description"] = arg_docs[name]
        if param.default is inspect.Parameter.empty:
            required.append(name)
    return {
        "type": "function",
        "function": {
            "name": fn.__name__,
            "description": doc.split("\n\n")[0].replace("\n", " ").strip(),
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def _convert(value: Any, annotation: Any) -> Any:
    target = typing.get_origin(annotation) or annotation
    if target is bool and isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.lower() == "true"
    if target in (int, float, str) and not isinstance(value, target):
        return target(value)
    return value


def bind_arguments(fn: Callable[..., Any], call: ToolCall) -> dict[str, Any]:
    """Keyword arguments for `fn` from a parsed call (positional ones bound in order).

    Raises:
        ToolError: missing, unknown or unconvertible arguments (the model's mistake).
    """
    hints = typing.get_type_hints(fn)
    params = list(inspect.signature(fn).parameters.values())
    args = dict(call.arguments)
    positional = list(args.pop(POSITIONAL, []))
    if len(positional) > len(params):
        raise ToolError(f"{call.name} takes {len(params)} arguments, got {len(positional)}")
    kwargs = {p.name: v for p, v in zip(params, positional, strict=False)}
    unknown = set(args) - {p.name for p in params}
    if unknown:
        raise ToolError(f"{call.name} has no argument {sorted(unknown)[0]!r}")
    kwargs.update(args)
    missing = [p.name for p in params if p.name not in kwargs and p.default is p.empty]
    if missing:
        raise ToolError(f"{call.name} is missing argument {missing[0]!r}")
    try:
        return {k: _convert(v, hints.get(k, Any)) for k, v in kwargs.items()}
    except (TypeError, ValueError, OverflowError) as e:
        raise ToolError(f"{call.name}: bad argument: {e}") from e


class ToolEnv(BaseEnv):
    """An environment whose assistant may call tools before giving a final answer.

    Subclasses implement `tasks`, `score_answer(task, final_answer)` and `teacher`.
    `Trajectory.info["tool_calls"]` (set by the episode runner) counts the calls.

    Args:
        tools: typed Python functions (sync or async).
        timeout_s: time limit of one tool call.
        max_turns: assistant turns allowed, tool calls included.
    """

    def __init__(
        self, tools: Sequence[Callable[..., Any]], *, timeout_s: float = 5.0, max_turns: int = 4
    ) -> None:
        self.tools = {fn.__name__: fn for fn in tools}
        self.tool_schemas = tuple(tool_schema(fn) for fn in tools)
        self.timeout_s = timeout_s
        self.max_turns = max_turns

    async def call_tool(self, call: ToolCall) -> str:
        """Run one call; its failures come back as "error: ..." text (see the module doc).

        Raises:
            ToolInfrastructureError: raised by the tool: a failure that is not the model's.
        """
        if call.name == INVALID_CALL:
            return _error_text(f"malformed tool call: {call.arguments.get('error', '')}")
        fn = self.tools.get(call.name)
        if fn is None:
            return _error_text(f"unknown tool {call.name!r}; available: {', '.join(self.tools)}")
        try:
            kwargs = bind_arguments(fn, call)
            if inspect.iscoroutinefunction(fn):
                result = await asyncio.wait_for(fn(**kwargs), self.timeout_s)
            else:
                result = await asyncio.wait_for(asyncio.to_thread(fn, **kwargs), self.timeout_s)
        except ToolError as e:
            return _error_text(str(e))
        except ToolInfrastructureError:
            raise
        except asyncio.TimeoutError:
            return _error_text(f"{call.name} did not finish within {self.timeout_s} s")
        except Exception as e:  # the tool's answer to this input: shown to the model
            return _error_text(f"{call.name} failed: {type(e).__name__}: {e}")
        return str(result)

    async def step(self, task: Task, state: Any, action: Message) -> StepResult:
        if not action.tool_calls:
            return StepResult(done=True, state=state)
        outputs = [await self.call_tool(c) for c in action.tool_calls]
        observation = tuple(
            Message("tool", out, name=c.name, tool_call_id=c.id or None)
            for c, out in zip(action.tool_calls, outputs, strict=True)
        )
        return StepResult(observation=observation, state=state)

    def final_answer(self, task: Task, trajectory: Trajectory) -> str:
        """The last assistant message that holds no tool call ("" if there is none)."""
        finals = [
            m.content
            for m in trajectory.messages[len(task.prompt) :]
            if m.role == "assistant" and not m.tool_calls
        ]
        return finals[-1] if finals else ""

    def score_answer(self, task: Task, answer: str, trajectory: Trajectory) -> Score:
        raise NotImplementedError

    def score(self, task: Task, trajectory: Trajectory) -> Score:
        if not assistant_texts(task, trajectory):
            return checked_score(self.score_answer(task, "", trajectory), self, "score_answer")
        answer = self.final_answer(task, trajectory)
        return checked_score(self.score_answer(task, answer, trajectory), self, "score_answer")
