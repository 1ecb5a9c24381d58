"""Judge client: chat completions over any OpenAI-compatible endpoint, limited and accounted.

Built on `openai.AsyncOpenAI` with the library's own retries turned off, so that the retry
policy here is explicit and bounded: HTTP 429, 5xx, timeouts and connection errors are retried
with exponential backoff (honouring `Retry-After`, capped); after `max_retries` a
`JudgeCallError` is raised, which the judges turn into an unscorable `Score(None)`. Any other
HTTP error (401, 404, 400 ...) is a configuration error and propagates unchanged.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import openai

from burnish.judges.config import JudgeConfig
from burnish.judges.metrics import JudgeMetrics


class JudgeCallError(RuntimeError):
    """A judge request kept failing with a transient error (429, 5xx, timeout) after retries."""


@dataclass(frozen=True)
class ChatResult:
    """One judge answer with its accounting."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str
    latency_s: float


def _transient(err: Exception) -> bool:
    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code == 429 or err.status_code >= 500
    return False


def _retry_after(err: Exception) -> float | None:
    response = getattr(err, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _api_key(config: JudgeConfig) -> str:
    if config.api_key_env is None:
        return "EMPTY"
    key = os.environ.get(config.api_key_env)
    if not key:
        raise ValueError(
            f"judge API key: environment variable {config.api_key_env!r} is not set "
            "(set it, or use api_key_env=None for a server without auth)"
        )
    return key


class JudgeClient:
    """Sends chat requests to one judge endpoint with concurrency, rate and retry limits.

    Args:
        config: endpoint, limits and prices.
        metrics: counters to update (shared with the judge that owns this client).
    """

    def __init__(self, config: JudgeConfig, metrics: JudgeMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics if metrics is not None else JudgeMetrics()
        self._api_key = _api_key(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rng = random.Random()

    def _bind_loop(self) -> None:
        # asyncio primitives and the HTTP client belong to one event loop; a CLI or test that
        # calls asyncio.run twice gets fresh ones instead of "attached to a different loop".
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        self._loop = loop
        self._sem = asyncio.Semaphore(self.config.max_concurrency)
        self._rate_lock = asyncio.Lock()
        self._next_start = 0.0
        # Our own HTTP client (not the library's default wrapper, whose finaliser schedules a
        # close on whatever loop is running then, which fails once its own loop is closed).
        self._client = openai.AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=self._api_key,
            timeout=self.config.timeout_s,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(),
        )

    async def aclose(self) -> None:
        """Close the HTTP connections of the current event loop's client."""
        if self._loop is asyncio.get_running_loop():
            await self._client.close()
            self._loop = None

    async def _wait_rate(self) -> None:
        if self.config.requests_per_minute is None:
            return
        async with self._rate_lock:
            now = time.monotonic()
            delay = self._next_start - now
            self._next_start = max(now, self._next_start) + 60.0 / self.config.requests_per_minute
        if delay > 0:
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, err: Exception) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt)
        hinted = _retry_after(err)
        if hinted is not None:
            base = min(self.config.backoff_max_s, max(base, hinted))
        return base * (0.5 + 0.5 * self._rng.random())

    async def complete(self, messages: list[dict[str, Any]]) -> ChatResult:
        """One chat completion, retried on transient errors.

        Raises:
            JudgeCallError: when every attempt failed with a transient error.
            openai.APIStatusError: for non-transient HTTP errors (bad key, unknown model ...).
        """
        self._bind_loop()
        cfg = self.config
        last: Exception | None = None
        for attempt in range(cfg.max_retries + 1):
            await self._wait_rate()
            start = time.monotonic()
            try:
                async with self._sem:
                    resp = await self._client.chat.completions.create(
                        model=cfg.model,
                        messages=messages,
                        temperature=cfg.temperature,
                        max_tokens=cfg.max_tokens,
                        extra_body=cfg.extra_body or None,
                    )
            except Exception as err:  # noqa: BLE001 - narrowed just below
                if not _transient(err):
                    raise
                last = err
                if attempt < cfg.max_retries:
                    self.metrics.retries += 1
                    await asyncio.sleep(self._backoff(attempt, err))
                continue
            usage = resp.usage
            pt = usage.prompt_tokens if usage is not None else 0
            ct = usage.completion_tokens if usage is not None else 0
            cost = cfg.cost(pt, ct)
            m = self.metrics
            m.calls += 1
            m.prompt_tokens += pt
            m.completion_tokens += ct
            m.cost_usd += cost
            text = resp.choices[0].message.content or "" if resp.choices else ""
            return ChatResult(text, pt, ct, cost, resp.model or cfg.model, time.monotonic() - start)
        self.metrics.failed_calls += 1
        raise JudgeCallError(
            f"judge {cfg.model!r} at {cfg.base_url}: {cfg.max_retries + 1} attempts failed; "
            f"last error: {type(last).__name__}: {last}"
        )
