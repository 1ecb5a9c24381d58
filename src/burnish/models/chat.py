"""How a model chats: its end-of-turn tokens, reasoning blocks, tool-call syntax, system role.

`ChatFormat` is worked out once per tokenizer (and model) by `chat_format` and read by the
episode runner (content extraction, tool-call parsing, rendering) and by the local sampler (when
to stop). It is the one place that knows a model's end-of-turn ids:

- the tokenizer's EOS token;
- every id of the model's `generation_config.eos_token_id` (Llama 3.x releases whose tokenizer
  EOS is `<|end_of_text|>` end their turns with `<|eot_id|>`, named only there);
- the token the chat template writes after an assistant message (`<|im_end|>`, `<|eot_id|>`,
  `<end_of_turn>`, `</s>` ...), found by rendering a probe conversation.

Reasoning: a `ReasoningParser` splits an assistant completion into its reasoning block and its
answer; environments and scorers see the answer, the trainer trains on every sampled token.
`think` (`<think>...</think>`) is chosen when the chat template mentions `</think>`.

A format is attached to its tokenizer (`attach_chat_format`), so everything that holds the
tokenizer (the runner, evaluation) uses the same one; `chat_format_of` reads it back, or works
one out from the tokenizer alone.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from burnish.envs.tool_calls import ToolCallParser, get_parser, parser_for

__all__ = [
    "REASONING_PARSERS",
    "ChatFormat",
    "ReasoningParser",
    "attach_chat_format",
    "chat_format",
    "chat_format_of",
    "end_token_ids",
]

PROBE_USER = "burnish probe question"
PROBE_ANSWER = "burnish-probe-answer-7"
"""Texts of the probe conversations rendered to learn what a template writes."""

_ATTR = "burnish_chat_format"


@dataclasses.dataclass(frozen=True)
class ReasoningParser:
    """A reasoning block delimited by `open` and `close` tags (`<think>`-style)."""

    name: str
    open: str
    close: str

    def split(self, text: str) -> tuple[str, str]:
        """`(reasoning, answer)` of an assistant text.

        The answer is what follows the last `close` tag (leading whitespace dropped). A text
        that opened a block and never closed it (a cut-off completion) has no answer. A text
        with no tags is all answer.
        """
        if self.close in text:
            head, _, answer = text.rpartition(self.close)
            return head.split(self.open, 1)[-1].strip(), answer.lstrip()
        if self.open in text:
            return text.split(self.open, 1)[1].strip(), ""
        return "", text

    def write(self, reasoning: str, answer: str) -> str:
        """Assistant text holding `reasoning` as a block, then `answer` (Qwen3's layout)."""
        return f"{self.open}\n{reasoning}\n{self.close}\n\n{answer}"


THINK = ReasoningParser("think", "<think>", "</think>")
REASONING_PARSERS: dict[str, ReasoningParser] = {THINK.name: THINK}
"""Reasoning parsers by name; `model.reasoning` also takes "auto" and "none"."""


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    """What the runner and the sampler need to know about a model's chat format."""

    end_token_ids: tuple[int, ...]
    """Every token that ends an assistant turn (stops sampling, stripped from the content)."""
    turn_end: str
    """The text the template writes right after an assistant message's content ("" if none)."""
    tool_parser: ToolCallParser | None
    """The tool-call syntax (None: the template cannot render tool results)."""
    reasoning: ReasoningParser | None
    """The reasoning-block parser (None: completions are all answer)."""
    template_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Extra variables for every render (e.g. `enable_thinking=False`)."""
    system_role: bool = True
    """Whether the template renders system messages; if not, they are merged into the first
    user turn (with a warning)."""

    def split_reasoning(self, text: str) -> tuple[str, str]:
        """`(reasoning, answer)` of an assistant text under this format."""
        return self.reasoning.split(text) if self.reasoning is not None else ("", text)


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def render(
    tokenizer: Any,
    messages: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool,
    tools: Sequence[Mapping[str, Any]] = (),
    template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """The chat template's text for `messages` (message dicts), as a string."""
    kwargs: dict[str, Any] = dict(template_kwargs or {})
    if tools:
        kwargs["tools"] = list(tools)
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages],
        add_generation_prompt=add_generation_prompt,
        tokenize=False,
        **kwargs,
    )
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}")
    return text


def _probe(tokenizer: Any, kwargs: Mapping[str, Any]) -> str:
    """What the template writes after an assistant message's content ("" if it cannot say)."""
    messages = [
        {"role": "user", "content": PROBE_USER},
        {"role": "assistant", "content": PROBE_ANSWER},
    ]
    try:
        text = render(tokenizer, messages, False, template_kwargs=kwargs)
    except Exception:  # noqa: BLE001 - a template that cannot render a plain exchange
        return ""
    return text.rsplit(PROBE_ANSWER, 1)[-1] if PROBE_ANSWER in text else ""


def _turn_end(tokenizer: Any, kwargs: Mapping[str, Any]) -> tuple[str, int | None]:
    """The end-of-turn token the template writes after assistant content, and its id."""
    after = _probe(tokenizer, kwargs)
    ids = list(tokenizer.encode(after, add_special_tokens=False)) if after else []
    if not ids:
        return "", None
    first = ids[0]
    text = tokenizer.decode([first], skip_special_tokens=False)
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    if first in added or first in set(getattr(tokenizer, "all_special_ids", []) or []):
        return text, first
    return "", None


def end_token_ids(
    tokenizer: Any, generation_config: Any = None, template_kwargs: Mapping[str, Any] | None = None
) -> tuple[int, ...]:
    """Every id that ends an assistant turn: tokenizer EOS, `generation_config` EOS ids and the
    template's end-of-turn token (see the module doc)."""
    ids = set(_ids(getattr(tokenizer, "eos_token_id", None)))
    ids.update(_ids(getattr(generation_config, "eos_token_id", None)))
    _, turn_end_id = _turn_end(tokenizer, template_kwargs or {})
    if turn_end_id is not None:
        ids.add(turn_end_id)
    return tuple(sorted(ids))


def _renders_system(tokenizer: Any, kwargs: Mapping[str, Any]) -> bool:
    messages = [{"role": "system", "content": PROBE_ANSWER}, {"role": "user", "content": "u"}]
    try:
        return PROBE_ANSWER in render(tokenizer, messages, True, template_kwargs=kwargs)
    except Exception:  # noqa: BLE001 - templates refuse a system role by raising
        return False


def _renders_tool_results(tokenizer: Any, kwargs: Mapping[str, Any]) -> bool:
    messages = [
        {"role": "user", "content": PROBE_USER},
        {"role": "assistant", "content": "call"},
        {"role": "tool", "content": PROBE_ANSWER, "name": "probe", "tool_call_id": "call00000"},
    ]
    try:
        return PROBE_ANSWER in render(tokenizer, messages, True, template_kwargs=kwargs)
    except Exception:  # noqa: BLE001 - templates without a tool role raise
        return False


def _template_text(tokenizer: Any) -> str:
    template = getattr(tokenizer, "chat_template", None) or ""
    return template if isinstance(template, str) else " ".join(map(str, template))


def _reasoning(tokenizer: Any, setting: str) -> ReasoningParser | None:
    if setting == "none":
        return None
    if setting == "auto":
        return THINK if THINK.close in _template_text(tokenizer) else None
    if setting not in REASONING_PARSERS:
        allowed = ", ".join(["auto", "none", *REASONING_PARSERS])
        raise ValueError(f"unknown reasoning parser {setting!r}; allowed: {allowed}")
    return REASONING_PARSERS[setting]


def chat_format(
    tokenizer: Any,
    generation_config: Any = None,
    *,
    template_kwargs: Mapping[str, Any] | None = None,
    reasoning: str = "auto",
    tool_format: str = "auto",
) -> ChatFormat:
    """Work out a model's `ChatFormat` from its tokenizer and generation config.

    Args:
        tokenizer: a tokenizer with a chat template.
        generation_config: the model's `generation_config` (its EOS ids end turns too).
        template_kwargs: extra variables passed to every render (`enable_thinking=False` ...).
        reasoning: "auto" (`think` when the template mentions `</think>`), "none", or a name
            of `REASONING_PARSERS`.
        tool_format: "auto" (chosen from the template, see `parser_for`; none when the template
            cannot render a tool result) or a name of `burnish.envs.tool_calls.PARSERS`.
    """
    kwargs = dict(template_kwargs or {})
    turn_end, _ = _turn_end(tokenizer, kwargs)
    if tool_format == "auto":
        tools = parser_for(tokenizer) if _renders_tool_results(tokenizer, kwargs) else None
    else:
        tools = get_parser(tool_format)
    return ChatFormat(
        end_token_ids=end_token_ids(tokenizer, generation_config, kwargs),
        turn_end=turn_end,
        tool_parser=tools,
        reasoning=_reasoning(tokenizer, reasoning),
        template_kwargs=kwargs,
        system_role=_renders_system(tokenizer, kwargs),
    )


def attach_chat_format(tokenizer: Any, fmt: ChatFormat) -> ChatFormat:
    """Make `fmt` the format everything holding `tokenizer` uses; returns it."""
    setattr(tokenizer, _ATTR, fmt)
    return fmt


def chat_format_of(tokenizer: Any, generation_config: Any = None) -> ChatFormat:
    """The format attached to `tokenizer`, else one worked out (and attached) with defaults."""
    fmt = getattr(tokenizer, _ATTR, None)
    if isinstance(fmt, ChatFormat):
        return fmt
    return attach_chat_format(tokenizer, chat_format(tokenizer, generation_config))


def merge_system(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """System messages folded into the first user turn (for templates without a system role)."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    warnings.warn(
        "the chat template has no system role: the system prompt is merged into the first "
        "user turn",
        stacklevel=3,
    )
    for m in rest:
        if m["role"] == "user":
            m["content"] = "\n\n".join([*system, m["content"]])
            return rest
    return [{"role": "user", "content": "\n\n".join(system)}, *rest]
