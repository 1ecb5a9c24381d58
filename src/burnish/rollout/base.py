"""The sampling contract: token ids in, token ids with logprobs out.

Every sampler (in-process HF, an OpenAI-compatible server such as vLLM or `burnish serve`)
implements `Sampler`. Environments and the trainer only ever see this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. Defaults are RL defaults: temperature 1, no truncation of the distribution."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    top_k: int = 0
    """0 means no top-k."""
    n: int = 1
    """Completions per prompt; `sample` returns len(prompts) * n completions, prompt-major."""
    stop: tuple[str, ...] = ()
    """Stop strings: generation ends once the decoded completion contains one (it is kept)."""
    stop_token_ids: tuple[int, ...] = ()
    """Extra stop tokens besides the tokenizer's EOS (the stop token is kept in the completion)."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")


@dataclass(frozen=True)
class Completion:
    """One sampled continuation of a prompt."""

    prompt_index: int
    """Index of the prompt in the `sample` call this completion answers."""
    token_ids: tuple[int, ...]
    """Sampled tokens, including the stop token when one ended the completion."""
    logprobs: tuple[float, ...]
    """Logprob of each sampled token under the distribution it was sampled from."""
    finish_reason: Literal["stop", "length"]
    text: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Sampler(Protocol):
    """Anything that can sample token ids with logprobs and follow the policy's weights."""

    async def sample(
        self, prompts: list[list[int]], params: SamplingParams, adapter: str | None = None
    ) -> list[Completion]:
        """Sample `params.n` completions for each prompt (prompt-major order)."""
        ...

    async def sync(self, policy: Any) -> None:
        """Make the sampler serve the policy's current weights (in-process: nothing to do)."""
        ...
