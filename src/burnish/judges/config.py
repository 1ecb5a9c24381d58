"""Settings of one judge endpoint (any OpenAI-compatible chat-completions server)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class JudgeConfig:
    """Where the judge runs, how it is sampled, and how calls are limited and priced.

    The API key is never stored here, only the name of the environment variable that holds it.
    """

    # --- core: set these for every judge ------------------------------------------------------
    base_url: str
    """Root of the OpenAI-compatible API, e.g. "http://127.0.0.1:8000/v1"."""
    model: str
    """Model id sent in each request; part of every cache key (pin a dated version)."""
    api_key_env: str | None = "OPENAI_API_KEY"
    """Name of the environment variable holding the key; None for servers without auth."""
    temperature: float = 0.0
    """Judge sampling temperature. Only temperature-0 calls are cached."""
    max_tokens: int = 1024
    """Completion budget of one judge answer (reasons included)."""

    # --- limits ----------------------------------------------------------------------------
    timeout_s: float = 60.0
    """Time limit of one request attempt, the whole body read included; past it the attempt
    counts as a transient failure."""
    max_concurrency: int = 8
    """Requests in flight at once (a shared semaphore per client)."""
    requests_per_minute: float | None = None
    """Request starts are spaced at least 60/rpm seconds apart; None = no limit."""
    max_retries: int = 3
    """Retries of a request after HTTP 429, 5xx, a timeout or a connection error."""
    backoff_s: float = 0.5
    """First retry delay; doubles per retry (plus jitter), capped at `backoff_max_s`."""
    backoff_max_s: float = 8.0
    max_response_bytes: int = 2**20
    """Largest response body read (1 MiB); a larger one is a failed call (reading stops there)."""
    max_client_errors: int = 3
    """Unusable answers in a row (HTTP 4xx other than 408 / 429, a body that is not a chat
    completion, one past `max_response_bytes`) with no success in between after which the judge
    raises `JudgeConfigurationError`: the endpoint or the request is misconfigured."""

    # --- accounting ------------------------------------------------------------------------
    price_per_1k_prompt_tokens: float | None = None
    """USD per 1000 prompt tokens; with the completion price, enables `judge/cost_usd`."""
    price_per_1k_completion_tokens: float | None = None
    extra_body: dict = field(default_factory=dict)
    """Extra request fields passed through (e.g. {"seed": 0} or provider options)."""

    def __post_init__(self) -> None:
        if not self.base_url:
            raise ValueError("base_url must be set (e.g. http://127.0.0.1:8000/v1)")
        if not self.model:
            raise ValueError("model must be set")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        for name in ("timeout_s", "backoff_s", "backoff_max_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_response_bytes < 1:
            raise ValueError(f"max_response_bytes must be >= 1, got {self.max_response_bytes}")
        if self.max_client_errors < 1:
            raise ValueError(f"max_client_errors must be >= 1, got {self.max_client_errors}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.requests_per_minute is not None and not self.requests_per_minute > 0:
            raise ValueError(
                f"requests_per_minute must be > 0 or None, got {self.requests_per_minute}"
            )
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def priced(self) -> bool:
        return (
            self.price_per_1k_prompt_tokens is not None
            or self.price_per_1k_completion_tokens is not None
        )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD cost of one call (0 for a price that is not configured)."""
        p = self.price_per_1k_prompt_tokens or 0.0
        c = self.price_per_1k_completion_tokens or 0.0
        return prompt_tokens / 1000 * p + completion_tokens / 1000 * c

    @property
    def sampling(self) -> dict:
        """The sampling parameters that enter cache keys."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, **self.extra_body}
