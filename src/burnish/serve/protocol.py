"""Request bodies of `burnish serve` (pydantic) and the vLLM response shapes it answers with.

The request models take vLLM's field names and defaults. Unknown fields are accepted and ignored,
as vLLM does; fields vLLM honours but burnish does not implement (penalties, ``logit_bias``,
``min_p``, beam search, ...) are refused with a 400 when set to anything but their neutral value,
rather than silently ignored (`unsupported_fields`).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_LOGPROBS",
    "ChatCompletionRequest",
    "CompletionRequest",
    "LoadLoRAAdapterRequest",
    "StreamOptions",
    "UnloadLoRAAdapterRequest",
    "model_card",
    "random_id",
    "unsupported_fields",
    "usage",
]

MAX_LOGPROBS = 20
"""Most log-prob alternatives a request may ask for (vLLM's default ``--max-logprobs``)."""

_NEUTRAL: dict[str, Any] = {
    "frequency_penalty": (None, 0, 0.0),
    "presence_penalty": (None, 0, 0.0),
    "repetition_penalty": (None, 1, 1.0),
    "min_p": (None, 0, 0.0),
    "logit_bias": (None, {}),
    "use_beam_search": (None, False),
    "best_of": (None, 1),
    "min_tokens": (None, 0),
    "suffix": (None, ""),
    "response_format": (None, {"type": "text"}),
    "guided_json": (None,),
    "guided_regex": (None,),
    "guided_choice": (None,),
    "guided_grammar": (None,),
    "structured_outputs": (None,),
    "allowed_token_ids": (None,),
    "bad_words": (None, []),
    "prompt_embeds": (None,),
}
"""Fields vLLM honours and burnish does not, with the values that mean "off"."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class StreamOptions(BaseModel):
    """``stream_options``: whether the stream ends with a usage chunk."""

    include_usage: bool | None = True
    continuous_usage_stats: bool | None = False


class _SamplingBody(_Body):
    """Fields the two generation routes share (vLLM's names and defaults)."""

    model: str | None = None
    n: int = Field(1, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=-1)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    return_tokens_as_token_ids: bool = False
    return_token_ids: bool = False
    ignore_eos: bool = False

    def stop_strings(self) -> tuple[str, ...]:
        """``stop`` as a tuple (vLLM takes one string or a list)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(s for s in self.stop if s)


class CompletionRequest(_SamplingBody):
    """``POST /v1/completions``."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=0)
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    prompt_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    echo: bool = False


class ChatCompletionRequest(_SamplingBody):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    add_generation_prompt: bool = True


class LoadLoRAAdapterRequest(_Body):
    """``POST /v1/load_lora_adapter``."""

    lora_name: str
    lora_path: str
    load_inplace: bool = False


class UnloadLoRAAdapterRequest(_Body):
    """``POST /v1/unload_lora_adapter``."""

    lora_name: str
    lora_int_id: int | None = None


def unsupported_fields(body: BaseModel) -> list[str]:
    """The fields of a request that vLLM would honour and burnish cannot (set to a non-neutral
    value); the route refuses the request when there are any."""
    extra = body.model_extra or {}
    return sorted(k for k, v in extra.items() if k in _NEUTRAL and v not in _NEUTRAL[k])


def random_id(prefix: str) -> str:
    """An id like vLLM's: the prefix and 16 hex digits (``cmpl-...``, ``chatcmpl-...``)."""
    return f"{prefix}-{secrets.token_hex(8)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The ``usage`` block."""
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
        "prompt_tokens_details": None,
    }


def model_card(
    name: str, root: str, parent: str | None, max_model_len: int | None, created: int
) -> dict[str, Any]:
    """One entry of ``GET /v1/models`` (vLLM's ``ModelCard``, owned by burnish)."""
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "burnish",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [
            {
                "id": random_id("modelperm"),
                "object": "model_permission",
                "created": created,
                "allow_create_engine": False,
                "allow_sampling": True,
                "allow_logprobs": True,
                "allow_search_indices": False,
                "allow_view": True,
                "allow_fine_tuning": False,
                "organization": "*",
                "group": None,
                "is_blocking": False,
            }
        ],
    }


def now() -> int:
    """Seconds since the epoch (the ``created`` field)."""
    return int(time.time())
