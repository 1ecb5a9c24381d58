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
and registers it with ``POST /v1/load_lora_adapter`` under a new versioned name (vLLM needs
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), then unloads the previous version; requests with
``adapter=None`` go to the latest synced adapter (the base model before the first sync).

`prompt_logprobs(sequences)` scores given tokens instead of sampling (the served teacher of
on-policy distillation): one request per sequence with the ids as the prompt, ``max_tokens=1``
(vLLM needs at least one) and vLLM's ``prompt_logprobs=0``; the answer's
``choices[0].prompt_logprobs`` holds ``None`` for the first token and, for every later token, a
dict keyed by token id (a string in JSON) whose entry for the prompt's own token has its
``"logprob"``. vLLM reports these from the raw model (temperature 1).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx

from burnish.models.lora import save_adapter
from burnish.rollout.base import Completion, SamplingParams
from burnish.rollout.local import BASE_ADAPTER
from burnish.seeds import mix_seed

__all__ = ["OpenAISampler", "SamplerServerError"]


class SamplerServerError(RuntimeError):
    """The sampling server failed or answered something unusable (an infrastructure error)."""


class OpenAISampler:
    """The `Sampler` over an OpenAI-compatible completions endpoint with token ids and logprobs.

    Args:
        base_url: server root including ``/v1`` (e.g. ``http://127.0.0.1:8000/v1``).
        model: the served base model's name.
        api_key_env: environment variable holding the API key (none sent when unset).
        adapter_dir: where `sync` writes adapters (must be readable by the server); default a
            temporary directory.
        policy_name: prefix of the names synced adapters are registered under.
        timeout: seconds per HTTP request.
        max_concurrency: most requests in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        *,
        adapter_dir: str | Path | None = None,
        policy_name: str = "policy",
        timeout: float = 600.0,
        max_concurrency: int = 64,
    ) -> None:
        headers = {}
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                raise ValueError(f"environment variable {api_key_env!r} (the API key) is not set")
            headers["Authorization"] = f"Bearer {key}"
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.policy_name = policy_name
        self._headers = headers
        self._timeout = timeout
        self._limit = asyncio.Semaphore(max_concurrency) if max_concurrency > 0 else None
        self._adapter_dir = Path(adapter_dir or tempfile.mkdtemp(prefix="burnish-adapters-"))
        self._version = 0
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
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            per_prompt = await asyncio.gather(
                *[self._one(client, i, list(p), params, model) for i, p in enumerate(prompts)]
            )
        return [c for cs in per_prompt for c in cs]

    async def sync(self, policy: Any) -> None:
        """Save the policy's adapter and make the server serve it (see the module docstring)."""
        self._version += 1
        name = f"{self.policy_name}-v{self._version}"
        path = save_adapter(policy, self._adapter_dir / name)
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            await self._post(
                client, "/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}
            )
            previous, self.current_adapter = self.current_adapter, name
            if previous is not None:
                await self._post(client, "/unload_lora_adapter", {"lora_name": previous})

    async def prompt_logprobs(
        self, sequences: list[list[int]], adapter: str | None = None
    ) -> list[list[float]]:
        """Each sequence's log-probs of its own tokens under the served model, ``0.0`` first
        (nothing predicts the first token); see the module docstring."""
        if not sequences or any(len(s) < 2 for s in sequences):
            raise ValueError("prompt_logprobs() needs sequences of at least 2 tokens")
        model = self._served_name(adapter)
        async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
            return list(
                await asyncio.gather(
                    *[self._scored(client, i, list(s), model) for i, s in enumerate(sequences)]
                )
            )

    # ---- requests ---------------------------------------------------------------------------

    def _served_name(self, adapter: str | None) -> str:
        if adapter is None:
            return self.current_adapter or self.model
        return self.model if adapter == BASE_ADAPTER else adapter

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

    async def _post(self, client: httpx.AsyncClient, route: str, body: dict) -> httpx.Response:
        url = self.base_url + route
        try:
            if self._limit is None:
                response = await client.post(url, json=body)
            else:
                async with self._limit:
                    response = await client.post(url, json=body)
        except httpx.HTTPError as e:
            raise SamplerServerError(f"request to {url} failed: {e!r}") from e
        if response.status_code != 200:
            raise SamplerServerError(
                f"{url} answered HTTP {response.status_code}: {response.text[:500]}"
            )
        return response

    async def _one(
        self,
        client: httpx.AsyncClient,
        index: int,
        prompt: list[int],
        params: SamplingParams,
        model: str,
    ) -> list[Completion]:
        response = await self._post(
            client, "/completions", self._body(prompt, index, params, model)
        )
        choices = sorted(response.json().get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != params.n:
            raise SamplerServerError(
                f"asked for n={params.n} completions of prompt {index}, got {len(choices)}"
            )
        return [_completion(index, c) for c in choices]

    async def _scored(
        self, client: httpx.AsyncClient, index: int, tokens: list[int], model: str
    ) -> list[float]:
        body = {
            "model": model,
            "prompt": tokens,
            "max_tokens": 1,
            "temperature": 1.0,
            "prompt_logprobs": 0,
        }
        response = await self._post(client, "/completions", body)
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
