"""`OpenAISampler`: sampling through an OpenAI-compatible ``/v1/completions`` server.

Speaks the vLLM dialect of the completions API (also served by SGLang and ``burnish serve``):
prompts go out as token ids, and each choice comes back with its token ids (``return_token_ids``,
or ``return_tokens_as_token_ids`` strings ``"token_id:N"`` in the logprobs as a fallback) and the
logprob of every sampled token (``logprobs=1``). The stop string is kept in the completion
(``include_stop_str_in_output``), as `LocalSampler` does.

Logprob semantics depend on the server: vLLM reports the raw model logprobs unless started with
``--logprobs-mode processed_logprobs``, which gives the logprobs of the distribution actually
sampled from (after temperature and top-p/top-k), what `LocalSampler` reports. At temperature 1
without truncation the two agree.

`sync(policy)` saves the policy's LoRA adapter under ``adapter_dir`` (a path the server can read)
and registers it with ``POST /v1/load_lora_adapter`` (vLLM needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=1``), then unloads the previous version and deletes its files;
requests with ``adapter=None`` go to the latest synced adapter (the base model before the first
sync). Names are ``SCOPE-SESSION-vN``: ``scope`` names the run (a training run keeps one across
resumes), ``SESSION`` is fresh for every sampler object, so a restarted or resumed run, or a
second run on the same server, never asks for a name the server already holds; the first sync
also unloads whatever an earlier session of the same scope left on the server. An adapter whose
rank exceeds ``max_lora_rank`` (the server's ``--max-lora-rank``) is refused before anything is
sent: vLLM answers such a load with an unexplained 500.

Errors: a 4xx answer is a `SamplerClientError` (a bug or a configuration error: retrying cannot
help), raised at once; a 5xx answer, a timeout or a refused connection is retried
``max_retries`` times with exponential backoff, then raised as a `SamplerServerError`. Both are
infrastructure failures: they stop the run, never become a reward.

`prompt_logprobs(sequences)` scores given tokens instead of sampling (the served teacher of
on-policy distillation): one request per sequence with the ids as the prompt, ``max_tokens=1``
(vLLM needs at least one) and vLLM's ``prompt_logprobs=0``; the answer's
``choices[0].prompt_logprobs`` holds ``None`` for the first token and, for every later token, a
dict keyed by token id (a string in JSON) whose entry for the prompt's own token has its
``"logprob"``. vLLM reports these from the raw model (temperature 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import os
import random
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx

from burnish.models.lora import save_adapter
from burnish.rollout.base import Completion, SamplingParams
from burnish.rollout.local import BASE_ADAPTER
from burnish.seeds import mix_seed

__all__ = ["OpenAISampler", "SamplerClientError", "SamplerError", "SamplerServerError"]


class SamplerError(RuntimeError):
    """The sampling server could not serve a request (an infrastructure error, never a reward)."""


class SamplerClientError(SamplerError):
    """The server refused the request (HTTP 4xx): a bug or a configuration error; not retried."""


class SamplerServerError(SamplerError):
    """The server failed (HTTP 5xx, timeout, connection) after every retry, or answered
    something unusable."""


class OpenAISampler:
    """The `Sampler` over an OpenAI-compatible completions endpoint with token ids and logprobs.

    Args:
        base_url: server root including ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``).
        model: the served base model's name.
        api_key_env: environment variable holding the API key (none sent when unset).
        adapter_dir: where `sync` writes adapters (must be readable by the server); default a
            temporary directory.
        scope: prefix of the names synced adapters are registered under (a training run passes
            its run id); see the module docstring.
        timeout: seconds per HTTP request.
        max_concurrency: most requests in flight at once.
        max_retries: retries of a request that failed with a 5xx, a timeout or a connection error.
        retry_backoff: seconds before the first retry (doubling after each).
        max_lora_rank: the server's ``--max-lora-rank``; `sync` refuses a larger adapter (None:
            not checked).
        seed: seeds the generator that gives requests without ``params.seed`` a seed, so a run
            is repeatable on servers that honour seeds (None: such requests go unseeded).
        transport: an ``httpx`` transport (tests).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        *,
        adapter_dir: str | Path | None = None,
        scope: str = "policy",
        timeout: float = 600.0,
        max_concurrency: int = 64,
        max_retries: int = 4,
        retry_backoff: float = 1.0,
        max_lora_rank: int | None = None,
        seed: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"environment variable {api_key_env!r} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.scope = scope
        self.session = secrets.token_hex(3)
        self._headers = headers
        self._timeout = timeout
        self._limit = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        self._retries, self._backoff = max_retries, retry_backoff
        self._max_rank = max_lora_rank
        self._rng = None if seed is None else random.Random(seed)
        self._transport = transport
        self._pool: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None
        self._adapter_dir = Path(adapter_dir or tempfile.mkdtemp(prefix="burnish-adapters-"))
        self._version = 0
        self._cleaned = False
        self._owned: dict[str, bool] = {}
        self.current_adapter: str | None = None
        """Name the latest synced adapter is served under (None before the first sync)."""

    # ---- the Sampler protocol -------------------------------------------------------------

    async def sample(
        self, prompts: list[list[int]], params: SamplingParams, adapter: str | None = None
    ) -> list[Completion]:
        """Sample ``params.n`` completions per prompt (prompt-major), one request per prompt."""
        if not prompts:
            raise ValueError("sample() needs at least one prompt, got an empty list")
        model = self._served_name(adapter)
        if params.seed is None and self._rng is not None:
            params = dataclasses.replace(params, seed=self._rng.getrandbits(62))
        per_prompt = await asyncio.gather(
            *[self._one(i, list(p), params, model) for i, p in enumerate(prompts)]
        )
        return [c for cs in per_prompt for c in cs]

    async def sync(self, policy: Any) -> None:
        """Save the policy's adapter and make the server serve it (see the module docstring)."""
        self._check_rank(policy)
        if not self._cleaned:
            await self._unload_leftovers()
        name = f"{self.scope}-{self.session}-v{self._version + 1}"
        await self._serve(save_adapter(policy, self._adapter_dir / name), name, owned=True)

    async def serve_saved(self, path: str | Path) -> None:
        """Serve an adapter another process saved at ``path`` (a path the server can read), as
        `sync` serves the policy's; the files stay the caller's (a Ray rollout worker loads
        what the trainer wrote)."""
        if not self._cleaned:
            await self._unload_leftovers()
        await self._serve(Path(path), f"{self.scope}-{self.session}-v{self._version + 1}")

    async def _serve(self, path: Path, name: str, owned: bool = False) -> None:
        """Load the adapter at ``path`` as ``name``, then unload the previous version (and
        delete its files when this sampler wrote them)."""
        self._version += 1
        await self._request("/load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        previous, self.current_adapter = self.current_adapter, name
        if previous is not None:
            await self._request("/unload_lora_adapter", {"lora_name": previous})
            if self._owned.pop(previous, False):
                shutil.rmtree(self._adapter_dir / previous, ignore_errors=True)
        self._owned[name] = owned

    async def prompt_logprobs(
        self, sequences: list[list[int]], adapter: str | None = None
    ) -> list[list[float]]:
        """Each sequence's log-probs of its own tokens under the served model, ``0.0`` first
        (nothing predicts the first token); see the module docstring."""
        if not sequences or any(len(s) < 2 for s in sequences):
            raise ValueError("prompt_logprobs() needs sequences of at least 2 tokens")
        model = self._served_name(adapter)
        return list(
            await asyncio.gather(
                *[self._scored(i, list(s), model) for i, s in enumerate(sequences)]
            )
        )

    def fork(self, seed: int) -> OpenAISampler:
        """A sampler on the same server and the adapter served now, whose unseeded requests
        take seeds from ``seed`` (an evaluation's own repeatable stream)."""
        other = copy.copy(self)
        other._rng = random.Random(seed)
        return other

    async def models(self) -> list[dict[str, Any]]:
        """The server's ``GET /v1/models`` list."""
        response = await self._request("/models", None)
        return list(response.json().get("data", []))

    async def aclose(self) -> None:
        """Close the HTTP connections (the sampler reopens them if used again)."""
        pool, self._pool = self._pool, None
        if pool is not None and pool[0] is asyncio.get_running_loop():
            await pool[1].aclose()

    # ---- requests ---------------------------------------------------------------------------

    def _served_name(self, adapter: str | None) -> str:
        if adapter is None:
            return self.current_adapter or self.model
        return self.model if adapter == BASE_ADAPTER else adapter

    def _check_rank(self, policy: Any) -> None:
        config = getattr(policy, "peft_config", {}).get(getattr(policy, "active_adapter", None))
        rank = getattr(config, "r", None)
        if self._max_rank is not None and rank is not None and rank > self._max_rank:
            raise SamplerClientError(
                f"the adapter's LoRA rank {rank} exceeds the server's --max-lora-rank "
                f"{self._max_rank} (vLLM answers 500 to it): lower lora.rank or restart the "
                "server with a larger --max-lora-rank"
            )

    async def _unload_leftovers(self) -> None:
        """Unload adapters an earlier session of this scope left on the server, and delete
        their files."""
        self._cleaned = True
        prefix = f"{self.scope}-"
        for entry in await self.models():
            name = str(entry.get("id", ""))
            if name.startswith(prefix) and not name.startswith(f"{prefix}{self.session}-"):
                with contextlib.suppress(SamplerClientError):  # already gone
                    await self._request("/unload_lora_adapter", {"lora_name": name})
                shutil.rmtree(self._adapter_dir / name, ignore_errors=True)

    def _client(self) -> httpx.AsyncClient:
        """One connection pool per event loop (a pool cannot be shared across loops). The loop
        is held, so a later loop cannot be mistaken for it by its address."""
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool[0] is not loop or self._pool[1].is_closed:
            client = httpx.AsyncClient(
                timeout=self._timeout, headers=self._headers, transport=self._transport
            )
            self._pool = (loop, client)  # a finished loop's pool is dropped
        return self._pool[1]

    def _body(self, prompt: list[int], index: int, params: SamplingParams, model: str) -> dict:
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": params.n,
            "logprobs": 1,
            "return_token_ids": True,
            "return_tokens_as_token_ids": True,
            "include_stop_str_in_output": True,
            "skip_special_tokens": False,
        }
        if params.top_k > 0:
            body["top_k"] = params.top_k
        if params.stop:
            body["stop"] = list(params.stop)
        if params.stop_token_ids:
            body["stop_token_ids"] = list(params.stop_token_ids)
        if params.seed is not None:
            body["seed"] = mix_seed(params.seed, index) % (2**31)
        return body

    async def _request(self, route: str, body: dict | None) -> httpx.Response:
        """POST ``body`` (GET when None) to ``route``, retrying server and connection errors."""
        url = self.base_url + route
        for attempt in range(self._retries + 1):
            try:
                response = await self._send(url, body)
            except httpx.HTTPError as e:
                error = SamplerServerError(f"request to {url} failed: {e!r}")
            else:
                if response.status_code == 200:
                    return response
                what = f"{url} answered HTTP {response.status_code}: {response.text[:500]}"
                if 400 <= response.status_code < 500:
                    raise SamplerClientError(what)
                error = SamplerServerError(what)
            if attempt == self._retries:
                break
            await asyncio.sleep(self._backoff * 2**attempt)
        if self._retries:
            error.args = (f"{error.args[0]} (after {self._retries} retries)",)
        raise error

    async def _send(self, url: str, body: dict | None) -> httpx.Response:
        client = self._client()
        if self._limit is None:
            return await (client.get(url) if body is None else client.post(url, json=body))
        async with self._limit:
            return await (client.get(url) if body is None else client.post(url, json=body))

    async def _one(
        self, index: int, prompt: list[int], params: SamplingParams, model: str
    ) -> list[Completion]:
        response = await self._request("/completions", self._body(prompt, index, params, model))
        choices = sorted(response.json().get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != params.n:
            raise SamplerServerError(
                f"asked for n={params.n} completions of prompt {index}, got {len(choices)}"
            )
        return [_completion(index, c) for c in choices]

    async def _scored(self, index: int, tokens: list[int], model: str) -> list[float]:
        body = {
            "model": model,
            "prompt": tokens,
            "max_tokens": 1,
            "temperature": 1.0,
            "prompt_logprobs": 0,
        }
        response = await self._request("/completions", body)
        choices = response.json().get("choices") or [{}]
        return _prompt_logprobs(index, tokens, choices[0], self.base_url)


def _prompt_logprobs(index: int, tokens: list[int], choice: dict, where: str) -> list[float]:
    """The log-prob of each prompt token from a vLLM-style ``prompt_logprobs`` list."""
    entries = choice.get("prompt_logprobs")
    if not isinstance(entries, list):
        raise SamplerServerError(
            f"{where}/completions returned no choices[0].prompt_logprobs for sequence {index}: "
            "a served teacher must support vLLM's prompt_logprobs request parameter (sent as "
            "prompt_logprobs=0), or set "
            "teacher.model for a teacher computed in process"
        )
    if len(entries) != len(tokens):
        raise SamplerServerError(
            f"sequence {index}: {len(tokens)} prompt tokens but {len(entries)} prompt_logprobs"
        )
    out = [0.0]
    for t, (token, entry) in enumerate(zip(tokens[1:], entries[1:]), 1):
        value = entry.get(str(token)) if isinstance(entry, dict) else None
        if isinstance(value, dict):
            value = value.get("logprob")
        if not isinstance(value, (int, float)):
            raise SamplerServerError(
                f"sequence {index}, position {t}: prompt_logprobs has no logprob of the prompt "
                f"token {token} (got {entry!r:.200})"
            )
        out.append(float(value))
    return out


def _completion(prompt_index: int, choice: dict) -> Completion:
    logprobs = choice.get("logprobs") or {}
    token_logprobs = logprobs.get("token_logprobs")
    token_ids = choice.get("token_ids")
    if token_ids is None:
        tokens = logprobs.get("tokens") or []
        if not all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
            raise SamplerServerError(
                "the server returned neither token_ids nor 'token_id:N' tokens; it must support "
                "vLLM's return_token_ids or return_tokens_as_token_ids"
            )
        token_ids = [int(t.split(":", 1)[1]) for t in tokens]
    if token_logprobs is None or len(token_logprobs) != len(token_ids):
        raise SamplerServerError(
            f"expected one logprob per sampled token ({len(token_ids)} tokens), got "
            f"{None if token_logprobs is None else len(token_logprobs)}"
        )
    finish = choice.get("finish_reason")
    if finish not in ("stop", "length"):
        raise SamplerServerError(f"unexpected finish_reason {finish!r}; expected stop or length")
    return Completion(
        prompt_index=prompt_index,
        token_ids=tuple(int(t) for t in token_ids),
        logprobs=tuple(float(x) for x in token_logprobs),
        finish_reason=finish,
        text=choice.get("text", ""),
    )
