"""The serving engine: concurrent requests for many adapters batched into mixed-adapter batches.

Requests only queue (as in `burnish.rollout.local.LocalSampler`): an engine task waits until one
event-loop turn passes with no new request, then takes queued requests into one batch, at most
``max_loras`` distinct adapters and ``max_batch_size`` rows (a single larger request still runs,
in several decode batches), and runs it on the engine's one worker thread while the event loop
keeps serving HTTP. Requests that arrive meanwhile form the next batch. Every row of a batch runs
through its own adapter in the same forward passes (PEFT mixed-adapter batches,
`burnish.models.generate.GenerationRow.adapter`), so requests for different adapters share decode
steps instead of taking turns.

Batches are static: a batch runs until its last row ends, and rows do not join a running batch
(vLLM's continuous batching does that). The model, adapter loads and evictions are touched only
by the worker thread, one job at a time.

Seeds: a request with ``seed = s`` gives completion ``j`` of prompt ``i`` the random stream
``mix_seed(s, i, j)``, as `LocalSampler` does, so it returns the same samples however it is
batched (up to floating-point differences between batch shapes); a request without a seed takes
a fresh one from the engine's generator.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from burnish.models.chat import end_token_ids
from burnish.models.generate import GenerationRow, RowResult, generate_rows
from burnish.models.lora import BASE_ROW
from burnish.seeds import mix_seed
from burnish.serve.adapters import AdapterSpec, AdapterStore
from burnish.serve.errors import ServeError, not_found
from burnish.serve.scoring import PromptPosition, prompt_logprobs

__all__ = [
    "Engine",
    "EngineStats",
    "PromptOutput",
    "Sampling",
    "TokenEvent",
    "cancel_when_closed",
]

TokenEvent = tuple[int, int, float, list[tuple[int, float]]]
"""What a streaming request hears after each sampled token: ``(choice, token, logprob, top)``,
``choice = prompt_index * n + j``."""

_SCORE_CHUNK = 32  # prompts scored in one forward for prompt_logprobs


@dataclass(frozen=True)
class Sampling:
    """How to sample one request's completions (resolved parameters, one set per request)."""

    max_tokens: int
    """Tokens per completion at most (also capped by the context length); 0 only scores."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    """The client's stop tokens; the model's end-of-turn tokens stop too (unless
    ``ignore_eos``)."""
    ignore_eos: bool = False
    """Keep sampling past end-of-turn tokens (vLLM's ``ignore_eos``: fixed-length benchmarks)."""
    logprobs: int = 0
    """Most likely alternatives to report with every sampled token."""
    prompt_logprobs: int | None = None
    """Alternatives per prompt position (None: prompt tokens are not scored)."""


@dataclass
class PromptOutput:
    """What one prompt of a request got: its ``n`` completions and its prompt scores."""

    prompt: list[int]
    rows: list[RowResult]
    prompt_logprobs: list[PromptPosition] | None = None


@dataclass
class EngineStats:
    """Counters of what the engine did (for logs, tests and the benchmark)."""

    requests: int = 0
    batches: int = 0
    rows: int = 0
    tokens: int = 0
    max_adapters_per_batch: int = 0
    """Most distinct adapters (the base model counted as one) seen in one batch."""


@dataclass
class _Request:
    prompts: list[list[int]]
    sampling: Sampling
    adapter: str | None
    base_seed: int
    future: asyncio.Future = field(repr=False)
    on_token: Callable[[TokenEvent], None] | None = None


class Engine:
    """Batched sampling of a base model and its LoRA adapters for `burnish serve`.

    Args:
        tokenizer: the model's tokenizer (pad id for padding; end-of-turn ids always stop).
        store: the adapters (it holds the base model).
        max_loras: most distinct adapters in one batch; more wait for the next batch.
        max_batch_size: most rows decoded together.
        threads: torch threads of the worker thread (set once); default torch's count.
        max_model_len: prompt plus completion tokens at most (default the model's positions).
        seed: seed of the generator that seeds requests without a seed.
    """

    def __init__(
        self,
        tokenizer: Any,
        store: AdapterStore,
        *,
        max_loras: int = 8,
        max_batch_size: int = 256,
        threads: int | None = None,
        max_model_len: int | None = None,
        seed: int | None = None,
    ) -> None:
        if max_loras < 1 or max_batch_size < 1:
            raise ValueError(f"max_loras ({max_loras}) and max_batch_size must be >= 1")
        if store.max_cpu_loras < max_loras:
            raise ValueError(
                f"max_cpu_loras ({store.max_cpu_loras}) must be >= max_loras ({max_loras})"
            )
        self.tokenizer = tokenizer
        self.store = store
        self.model = store.base.eval()
        self.max_loras = max_loras
        self.max_batch_size = max_batch_size
        positions = getattr(self.model.config, "max_position_embeddings", None)
        self.max_model_len: int | None = max_model_len or positions
        self.stats = EngineStats()
        self._threads = threads or torch.get_num_threads()
        self._rng = random.Random(seed)
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="burnish-serve",
            initializer=torch.set_num_threads,
            initargs=(self._threads,),
        )
        self._pending: list[_Request] = []
        self._worker: asyncio.Task | None = None
        gen = getattr(self.model, "generation_config", None)
        self.end_ids = frozenset(end_token_ids(tokenizer, gen))
        """Tokens that always end a completion (tokenizer EOS, generation-config EOS ids, the
        chat template's end of turn)."""
        self.pad_id = next(
            (int(i) for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0
        )

    def stop_ids(self, sampling: Sampling) -> frozenset[int]:
        """The end-of-turn tokens that end a request's completions (none with ``ignore_eos``)."""
        return frozenset() if sampling.ignore_eos else self.end_ids

    async def generate(
        self,
        prompts: list[list[int]],
        sampling: Sampling,
        adapter: str | None = None,
        on_token: Callable[[TokenEvent], None] | None = None,
    ) -> list[PromptOutput]:
        """Sample ``sampling.n`` completions of every prompt, batched with concurrent requests.

        Args:
            prompts: token ids (non-empty, validated by the caller against the context).
            sampling: the request's parameters.
            adapter: a registered adapter's name, or None for the base model.
            on_token: called on the event loop after every sampled token (streaming).

        Raises:
            ServeError: the adapter was unregistered or failed to load.
        """
        loop = asyncio.get_running_loop()
        seed = sampling.seed if sampling.seed is not None else self._rng.getrandbits(62)
        request = _Request(prompts, sampling, adapter, seed, loop.create_future(), on_token)
        self._pending.append(request)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await request.future

    def start_stream(
        self, prompts: list[list[int]], sampling: Sampling, adapter: str | None = None
    ) -> tuple[asyncio.Task, asyncio.Queue]:
        """Start a request for streaming: its `TokenEvent`s arrive on the queue, then None once
        the task (which returns what `generate` does) has finished."""
        queue: asyncio.Queue[TokenEvent | None] = asyncio.Queue()
        task = asyncio.ensure_future(
            self.generate(prompts, sampling, adapter, on_token=queue.put_nowait)
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        return task, queue

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the worker thread, between batches (adapter loads and drops)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=True)

    # ---- batching (event loop) -----------------------------------------------------------

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            seen = -1
            while seen != len(self._pending):  # wait for a turn in which nothing new arrived
                seen = len(self._pending)
                await asyncio.sleep(0)
            ready, specs = self._resolve(self._take_batch())
            if not ready:
                continue
            on_token = _thread_safe(loop)
            try:
                results = await loop.run_in_executor(
                    self._executor, self._run_batch, ready, specs, on_token
                )
            except Exception as e:  # noqa: BLE001 - handed to every waiting caller
                for r in ready:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            for r, result in zip(ready, results, strict=True):
                if r.future.done():
                    continue
                if isinstance(result, BaseException):
                    r.future.set_exception(result)
                else:
                    r.future.set_result(result)

    def _take_batch(self) -> list[_Request]:
        """Queued requests for one batch: FIFO, skipping requests whose adapter would exceed
        ``max_loras`` or whose rows would exceed ``max_batch_size`` (the first always fits).
        Requests whose caller went away (a closed connection cancels them) are dropped."""
        batch, rest, adapters, rows = [], [], set(), 0
        for r in self._pending:
            if r.future.done():
                continue
            n_rows = len(r.prompts) * r.sampling.n
            fits_adapter = r.adapter in adapters or len(adapters) < self.max_loras
            if not batch or (fits_adapter and rows + n_rows <= self.max_batch_size):
                batch.append(r)
                adapters.add(r.adapter)
                rows += n_rows
            else:
                rest.append(r)
        self._pending = rest
        return batch

    def _resolve(self, batch: list[_Request]) -> tuple[list[_Request], dict[str, AdapterSpec]]:
        """The requests whose adapter is still registered, and those adapters' registrations;
        requests for an adapter unloaded since they queued get the unknown-model 404."""
        specs: dict[str, AdapterSpec] = {}
        ready = []
        for r in batch:
            if r.adapter is None:
                ready.append(r)
            elif (spec := self.store.registered.get(r.adapter)) is not None:
                specs[spec.name] = spec
                ready.append(r)
            else:
                r.future.set_exception(
                    not_found(f"The model `{r.adapter}` does not exist.", param="model")
                )
        return ready, specs

    # ---- one batch (worker thread) -------------------------------------------------------

    def _run_batch(
        self,
        requests: list[_Request],
        specs: dict[str, AdapterSpec],
        on_token: Callable[[_Request, TokenEvent], None],
    ) -> list[list[PromptOutput] | BaseException]:
        """Load the batch's adapters, score prompts, sample every row; one result per request
        (an exception for requests whose adapter failed to load)."""
        slots: dict[str | None, str | None] = {None: None}
        failed: dict[str, ServeError] = {}
        for spec in specs.values():
            try:
                slots[spec.name] = self.store.ensure_one(spec, pinned=set(specs))
            except ServeError as e:
                failed[spec.name] = e
        live = [r for r in requests if r.adapter not in failed]
        if self.store.has_lora_layers:  # name every row's adapter: a mixed-adapter batch
            slots[None] = BASE_ROW
        outputs = {id(r): [PromptOutput(list(p), []) for p in r.prompts] for r in live}
        self._score_prompts(live, slots, outputs)
        rows, owners = self._rows(live, slots)
        results = self._sample(rows, owners, on_token)
        for (r, i, _), res in zip(owners, results, strict=True):
            outputs[id(r)][i].rows.append(res)
        self.stats.requests += len(live)
        self.stats.batches += 1
        self.stats.rows += len(rows)
        self.stats.tokens += sum(len(res.tokens) for res in results)
        self.stats.max_adapters_per_batch = max(
            self.stats.max_adapters_per_batch, len({r.adapter for r in live})
        )
        return [failed[r.adapter] if r.adapter in failed else outputs[id(r)] for r in requests]

    def _rows(
        self, requests: list[_Request], slots: dict[str | None, str | None]
    ) -> tuple[list[GenerationRow], list[tuple[_Request, int, int]]]:
        """Every completion to sample, and who it belongs to: (request, prompt, choice)."""
        limit = self.max_model_len
        rows, owners = [], []
        for r in requests:
            s = r.sampling
            stop_ids = tuple(sorted(set(s.stop_token_ids) | self.stop_ids(s)))
            for i, prompt in enumerate(r.prompts):
                budget = s.max_tokens if limit is None else min(s.max_tokens, limit - len(prompt))
                for j in range(s.n if budget > 0 else 0):
                    rows.append(
                        GenerationRow(
                            prompt=tuple(prompt), max_new_tokens=budget,
                            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                            stop_token_ids=stop_ids, stop=s.stop,
                            seed=mix_seed(r.base_seed, i, j), adapter=slots[r.adapter],
                            top_logprobs=s.logprobs,
                        )
                    )  # fmt: skip
                    owners.append((r, i, i * s.n + j))
        return rows, owners

    def _sample(
        self,
        rows: list[GenerationRow],
        owners: list[tuple[_Request, int, int]],
        on_token: Callable[[_Request, TokenEvent], None],
    ) -> list[RowResult]:
        """Decode all rows, shortest prompts together, ``max_batch_size`` rows at a time."""
        order = sorted(range(len(rows)), key=lambda k: len(rows[k].prompt))  # less padding
        results: list[RowResult] = [None] * len(rows)  # type: ignore[list-item]
        for s in range(0, len(order), self.max_batch_size):
            chunk = order[s : s + self.max_batch_size]

            def heard(i: int, res: RowResult, chunk: list[int] = chunk) -> None:
                request, _, choice = owners[chunk[i]]
                if request.on_token is not None:
                    top = res.top_logprobs[-1] if res.top_logprobs else []
                    on_token(request, (choice, res.tokens[-1], res.logprobs[-1], top))

            out = generate_rows(
                self.model, self.tokenizer, [rows[k] for k in chunk], pad_id=self.pad_id,
                on_token=heard,
            )  # fmt: skip
            for k, res in zip(chunk, out, strict=True):
                results[k] = res
        return results

    def _score_prompts(
        self,
        requests: list[_Request],
        slots: dict[str | None, str | None],
        outputs: dict[int, list[PromptOutput]],
    ) -> None:
        """Fill in ``prompt_logprobs`` of the requests that asked for them."""
        jobs = [
            (r, i, p) for r in requests if r.sampling.prompt_logprobs is not None
            for i, p in enumerate(r.prompts)
        ]  # fmt: skip
        for s in range(0, len(jobs), _SCORE_CHUNK):
            chunk = jobs[s : s + _SCORE_CHUNK]
            k = max(r.sampling.prompt_logprobs or 0 for r, _, _ in chunk)
            names = [slots[r.adapter] for r, _, _ in chunk]
            scored = prompt_logprobs(
                self.model, [p for _, _, p in chunk], k=k, pad_id=self.pad_id,
                adapters=None if names[0] is None else names,  # type: ignore[arg-type]
            )  # fmt: skip
            for (r, i, _), positions in zip(chunk, scored, strict=True):
                want = r.sampling.prompt_logprobs or 0
                outputs[id(r)][i].prompt_logprobs = [
                    PromptPosition(p.token, p.logprob, p.rank, p.top[:want]) for p in positions
                ]


async def cancel_when_closed(task: asyncio.Task, events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Pass a stream's events through, and cancel its request when the stream is closed early
    (the client went away): a request that has not started yet is then never sampled."""
    try:
        async for event in events:
            yield event
    finally:
        if not task.done():
            task.cancel()


def _thread_safe(loop: asyncio.AbstractEventLoop) -> Callable[[_Request, TokenEvent], None]:
    """A callback the worker thread can call to hand a token event to a request's listener."""

    def deliver(request: _Request, event: TokenEvent) -> None:
        if request.on_token is not None:
            loop.call_soon_threadsafe(request.on_token, event)

    return deliver
