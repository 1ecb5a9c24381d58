"""What every route of `burnish serve` reads: the engine, the served names, the limits.

`ServerState` also holds the checks the two generation routes share: which model a request
names, whether its prompts fit the context, and the sampling parameters it resolves to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from burnish.models.chat import ChatFormat, chat_format_of
from burnish.serve.engine import Engine, Sampling
from burnish.serve.errors import bad_request, not_found
from burnish.serve.protocol import CompletionRequest, now, unsupported_fields

__all__ = ["ServerState", "sampling_defaults"]

_DEFAULT_KEYS = ("temperature", "top_p", "top_k")


def sampling_defaults(model: Any) -> dict[str, Any]:
    """The sampling defaults a model's ``generation_config.json`` sets (vLLM applies them to
    requests that leave a parameter out): the values that differ from transformers' own."""
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return {}
    diff = gen.to_diff_dict()
    return {k: diff[k] for k in _DEFAULT_KEYS if diff.get(k) is not None}


@dataclass
class ServerState:
    """The served model and everything the routes need to answer for it."""

    engine: Engine
    base_name: str
    """The name the base model is served under (``--served-model-name``, else ``--model``)."""
    model_root: str
    """What ``--model`` named (``/v1/models`` shows it as the base model's ``root``)."""
    max_model_len: int
    allow_runtime_lora: bool = False
    """Whether ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` exist."""
    api_key: str | None = None
    """When set, every ``/v1`` route needs ``Authorization: Bearer <api_key>`` (vLLM's
    ``--api-key``)."""
    defaults: dict[str, Any] = field(default_factory=dict)
    """Sampling defaults from the model's generation config (`sampling_defaults`)."""
    created: int = field(default_factory=now)

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    @property
    def chat(self) -> ChatFormat:
        """The model's chat format (end-of-turn ids, tool-call syntax, system role)."""
        gen = getattr(self.engine.model, "generation_config", None)
        return chat_format_of(self.tokenizer, gen)

    def adapter_of(self, model: str | None) -> str | None:
        """The adapter a request's ``model`` names (None: the base model).

        Raises:
            ServeError: 404 when nothing is served under that name.
        """
        if model is None or model == self.base_name:
            return None
        if model in self.engine.store.registered:
            return model
        raise not_found(f"The model `{model}` does not exist.", param="model")

    def check_prompt(self, prompt: list[int], max_tokens: int) -> None:
        """Refuse empty prompts, unknown token ids and prompts the context cannot hold."""
        if not prompt:
            raise bad_request("The prompt cannot be empty.", param="prompt")
        vocab = int(getattr(self.engine.model.config, "vocab_size", 0) or 0)
        bad = next((t for t in prompt if t < 0 or (vocab and t >= vocab)), None)
        if bad is not None:
            raise bad_request(f"Token id {bad} is out of vocabulary", param="prompt")
        if len(prompt) > self.max_model_len or (
            max_tokens > 0 and len(prompt) >= self.max_model_len
        ):
            raise bad_request(
                f"Input length ({len(prompt)}) exceeds model's maximum context length "
                f"({self.max_model_len}).",
                param="prompt",
            )

    def sampling(
        self,
        body: Any,
        max_tokens: int,
        logprobs: int = 0,
        prompt_logprobs: int | None = None,
    ) -> Sampling:
        """The engine's parameters for a request (generation-config defaults filled in).

        Raises:
            ServeError: 400 for parameters burnish does not implement.
        """
        unsupported = unsupported_fields(body)
        if unsupported:
            raise bad_request(
                f"burnish serve does not support {', '.join(unsupported)}", param=unsupported[0]
            )
        top_k = body.top_k if body.top_k is not None else self.defaults.get("top_k", 0)
        return Sampling(
            max_tokens=max_tokens,
            temperature=_pick(body.temperature, self.defaults.get("temperature"), 1.0),
            top_p=_pick(body.top_p, self.defaults.get("top_p"), 1.0),
            top_k=max(0, int(top_k)),
            n=body.n,
            seed=body.seed,
            stop=body.stop_strings(),
            stop_token_ids=tuple(body.stop_token_ids or ()),
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            ignore_eos=body.ignore_eos,
        )

    def completion_prompts(self, body: CompletionRequest) -> list[tuple[list[int], str | None]]:
        """The prompts of a completions request as token ids, with their text when given as
        text (encoded with the tokenizer's special tokens, as vLLM does)."""
        p = body.prompt
        if isinstance(p, str):
            items: list = [p]
        elif p and all(isinstance(x, int) for x in p):
            items = [p]
        else:
            items = list(p)
        if not items:
            raise bad_request("The prompt cannot be empty.", param="prompt")
        out = []
        for item in items:
            if isinstance(item, str):
                out.append((list(self.tokenizer.encode(item)), item))
            else:
                out.append(([int(t) for t in item], None))
        return out


def _pick(value: float | None, default: float | None, fallback: float) -> float:
    if value is not None:
        return float(value)
    return float(default) if default is not None else fallback
