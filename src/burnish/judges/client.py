"""Judge client: chat completions over any OpenAI-compatible endpoint, limited and accounted.

Built on `openai.AsyncOpenAI` with the library's own retries turned off, so that the retry
policy here is explicit and bounded. Every outcome of a request is one of:

- an answer: a 2xx chat-completion JSON body of at most `max_response_bytes`;
- a transient failure (HTTP 408, 429, 5xx, a timeout, a connection error): retried with
  exponential backoff (honouring `Retry-After`, capped); after `max_retries` a `JudgeCallError`;
- an unusable answer (HTTP 4xx other than 408 / 429, a 2xx body that is not a chat completion,
  e.g. an HTML page, or a body past `max_response_bytes`): not retried, a `JudgeCallError`.

The judges turn a `JudgeCallError` into an unscorable `Score(None)`, never a reward. An unusable
answer that keeps coming is a configuration error (wrong URL, model, key or request field):
after `max_client_errors` of them in a row with no answer in between, `JudgeConfigurationError`
is raised instead, naming the endpoint, the status and the response text, and the run stops.

`max_response_bytes` bounds the answer body as read (decompressed); an error body (4xx / 5xx)
is read by the openai library itself and only its start is quoted in messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass
from typing import Any

import openai

from burnish.judges.config import JudgeConfig
from burnish.judges.metrics import JudgeMetrics

_EXCERPT = 300
"""Characters of a response body quoted in error messages."""


class JudgeCallError(RuntimeError):
    """A judge request failed: transient errors past the retries, or an unusable answer."""


class JudgeConfigurationError(ValueError):
    """The judge endpoint keeps answering with client errors: the configuration is wrong."""


class _Unusable(Exception):
    """An answer that shows the endpoint or the request is wrong (not retried)."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.body = body

    def describe(self) -> str:
        text = f"HTTP {self.status}: {self.reason}"
        return f"{text}; response text: {self.body!r}" if self.body else text


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
    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError, asyncio.TimeoutError)):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 429) or err.status_code >= 500
    return False


def _client_error(err: Exception) -> _Unusable | None:
    """A 4xx other than 408 / 429 as an unusable answer (None for anything else)."""
    if not isinstance(err, openai.APIStatusError) or not 400 <= err.status_code < 500:
        return None
    if err.status_code in (408, 429):
        return None
    try:
        body = err.response.text
    except Exception:  # a body that cannot be decoded is quoted as absent
        body = ""
    return _Unusable(err.status_code, err.message or type(err).__name__, _excerpt(body))


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text[: _EXCERPT * 4].decode("utf-8", errors="replace")
    text = text.strip()
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "..."


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


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def parse_completion(body: bytes, status: int, content_type: str) -> tuple[str, int, int, str]:
    """(text, prompt tokens, completion tokens, model) of a chat-completion body.

    Raises:
        _Unusable: the body is not JSON, or not a chat completion.
    """
    try:
        data = json.loads(body)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        what = f"the body is not JSON (content-type {content_type or 'missing'!r})"
        raise _Unusable(status, what, _excerpt(body)) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        what = 'the body is not a chat completion (no "choices" list)'
        raise _Unusable(status, what, _excerpt(body))
    text = ""
    if choices:
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if content is not None and not isinstance(content, str):
            what = (
                "the body is not a chat completion (choices[0].message.content is "
                f"{type(content).__name__}, not text)"
            )
            raise _Unusable(status, what, _excerpt(body))
        text = content or ""
    usage = data.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    model = data.get("model")
    prompt_tokens, completion_tokens = (
        _count(usage.get(k)) for k in ("prompt_tokens", "completion_tokens")
    )
    return text, prompt_tokens, completion_tokens, model if isinstance(model, str) else ""


async def _read_capped(response: Any, limit: int) -> bytes:
    """The body of a streamed openai response, refusing one past `limit` bytes."""
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise _Unusable(
            response.status_code,
            f"the body is {int(length)} bytes, more than max_response_bytes={limit}",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise _Unusable(
                response.status_code,
                f"the body is larger than max_response_bytes={limit} (reading stopped at "
                f"{size} bytes)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


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
        self._unusable_in_a_row = 0  # unusable answers since the last answer (module doc)

    def _bind_loop(self) -> None:
        # asyncio primitives and the HTTP client belong to one event loop. A run has one loop
        # (bound once); a library caller that scores from several `asyncio.run` calls gets
        # fresh ones per loop instead of "attached to a different loop".
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

    async def _attempt(self, messages: list[dict[str, Any]]) -> tuple[str, int, int, str]:
        cfg = self.config
        async with self._client.chat.completions.with_streaming_response.create(
            model=cfg.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            extra_body=cfg.extra_body or None,
        ) as response:
            body = await _read_capped(response, cfg.max_response_bytes)
            status = response.status_code
            content_type = response.headers.get("content-type", "")
        return parse_completion(body, status, content_type)

    def _unusable(self, bad: _Unusable) -> JudgeCallError | JudgeConfigurationError:
        """Count an unusable answer; the error to raise for it."""
        cfg = self.config
        self.metrics.failed_calls += 1
        self.metrics.client_errors += 1
        self._unusable_in_a_row += 1
        where = f"judge model {cfg.model!r} at {cfg.base_url}"
        if self._unusable_in_a_row >= cfg.max_client_errors:
            return JudgeConfigurationError(
                f"{where}: {self._unusable_in_a_row} requests in a row got an unusable answer and "
                f"none succeeded in between (max_client_errors={cfg.max_client_errors}); last: "
                f"{bad.describe()}. Check base_url, model, api_key_env and extra_body "
                "(a 4xx other than 408 / 429 is not retried)"
            )
        return JudgeCallError(f"{where}: unusable answer: {bad.describe()}")

    async def complete(self, messages: list[dict[str, Any]]) -> ChatResult:
        """One chat completion, retried on transient errors.

        Raises:
            JudgeCallError: every attempt failed with a transient error, or the answer was
                unusable (see the module doc).
            JudgeConfigurationError: `max_client_errors` unusable answers in a row.
        """
        self._bind_loop()
        cfg = self.config
        last: Exception | None = None
        for attempt in range(cfg.max_retries + 1):
            await self._wait_rate()
            start = time.monotonic()
            try:
                async with self._sem:
                    text, pt, ct, model = await asyncio.wait_for(
                        self._attempt(messages), cfg.timeout_s
                    )
            except _Unusable as bad:
                raise self._unusable(bad) from None
            except Exception as err:  # noqa: BLE001 - narrowed just below
                bad = _client_error(err)
                if bad is not None:
                    raise self._unusable(bad) from None
                if not _transient(err):
                    raise
                last = err
                if attempt < cfg.max_retries:
                    self.metrics.retries += 1
                    await asyncio.sleep(self._backoff(attempt, err))
                continue
            self._unusable_in_a_row = 0
            cost = cfg.cost(pt, ct)
            m = self.metrics
            m.calls += 1
            m.prompt_tokens += pt
            m.completion_tokens += ct
            m.cost_usd += cost
            return ChatResult(text, pt, ct, cost, model or cfg.model, time.monotonic() - start)
        self.metrics.failed_calls += 1
        error = f"{type(last).__name__}: {last}"
        if isinstance(last, asyncio.TimeoutError):
            error = f"Timeout: no complete answer within timeout_s={cfg.timeout_s}"
        raise JudgeCallError(
            f"judge {cfg.model!r} at {cfg.base_url}: {cfg.max_retries + 1} attempts failed; "
            f"last error: {error}"
        )
