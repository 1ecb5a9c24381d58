"""`LocalSampler`: the in-process sampler (the model lives in this Python process).

Episodes run as concurrent asyncio tasks and each asks for one prompt at a time. Generating those
requests one by one would run a 64-episode step as 64 sequential generations, so `sample` only
queues its request: a worker task waits until no new request arrived during one event-loop turn,
then generates everything queued in one batch (per adapter), inline or on a worker thread, and hands
each caller its completions. Requests that arrive while a batch is generating form the next batch.

Sampling itself is `burnish.models.generate.generate_rows`: a KV-cache decode loop with per-row
temperature, top-p, top-k, stop tokens, stop strings and random streams; see that module for what
the reported logprobs are (the distribution actually sampled from, after temperature and
truncation).

Seeds: a request with ``params.seed = s`` gives completion ``j`` of prompt ``i`` the random stream
``mix(s, i, j)``, so the same call with the same seed returns the same samples however it is
batched with other requests (up to floating-point differences between batch shapes). A request
without a seed takes a fresh seed from the sampler's own generator (seeded at construction from
``seed`` or from torch's global RNG), so a whole run is reproducible when requests arrive in the
same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from burnish.models.chat import end_token_ids
from burnish.models.generate import GenerationRow, RowResult, generate_rows
from burnish.models.lora import is_lora, reference_mode
from burnish.rollout.base import Completion, SamplingParams
from burnish.seeds import mix_seed

__all__ = ["BASE_ADAPTER", "LocalSampler", "SamplerStats"]

BASE_ADAPTER = "base"
"""The adapter name meaning "the base model, every adapter disabled" (the reference policy)."""


@dataclass
class SamplerStats:
    """Counters of what the sampler did (for logs and tests)."""

    requests: int = 0
    """`sample` calls served."""
    generations: int = 0
    """Batched generations run (one per adapter per drained queue, more past max_batch_size)."""
    rows: int = 0
    """Completions generated."""
    tokens: int = 0
    """Tokens sampled."""


@dataclass
class _Request:
    prompts: list[list[int]]
    params: SamplingParams
    adapter: str | None
    base_seed: int
    future: asyncio.Future = field(repr=False)


class LocalSampler:
    """Batched sampling from an in-process transformers model (optionally PEFT-wrapped).

    Args:
        model: the causal LM (a `PeftModel` to sample from adapters).
        tokenizer: its tokenizer (the model's end-of-turn ids always stop; pad id used for left
            padding).
        max_batch_size: most rows decoded together; bigger batches are split.
        threads: torch threads while generating; default the count the caller's thread has
            when the batch starts (so it follows `burnish.models.threads.ThreadGovernor`).
        seed: seed of the generator that seeds requests without a seed; default drawn from
            torch's global RNG.
        inline: generate on the event loop's own thread (the default). torch gives every OS
            thread that runs ops its own OpenMP team, and an idle team keeps spinning for a while:
            sampling on a worker thread while the trainer runs on the main one put 2 x N threads
            on N cores and made a 2-thread training step about 2x slower than a 1-thread one.
            Inline generation blocks the loop while it runs, which costs nothing when every
            waiting coroutine waits on that generation; pass False when other coroutines (a
            server, tool calls) must keep running meanwhile.

    `sample(..., adapter=)`: None samples the model as it is (the active adapter, if any);
    ``"base"`` the base model with adapters disabled; any other name a PEFT adapter loaded on
    the model, active only for that generation.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        max_batch_size: int = 256,
        threads: int | None = None,
        seed: int | None = None,
        inline: bool = True,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.threads = threads
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self._rng = random.Random(seed)
        self.stats = SamplerStats()
        self.inline = inline
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="burnish-sampler")
        self._pending: list[_Request] = []
        self._worker: asyncio.Task | None = None
        self._end_ids: list[int] | None = None
        self._positions: tuple[torch.nn.Module, int | None] | None = None

    # ---- the Sampler protocol -------------------------------------------------------------

    async def sample(
        self, prompts: list[list[int]], params: SamplingParams, adapter: str | None = None
    ) -> list[Completion]:
        """Sample ``params.n`` completions per prompt (prompt-major), batched with concurrent
        calls."""
        self._check_prompts(prompts)
        self._check_adapter(adapter)
        loop = asyncio.get_running_loop()
        base_seed = params.seed if params.seed is not None else self._rng.getrandbits(62)
        request = _Request(
            [list(p) for p in prompts], params, adapter, base_seed, loop.create_future()
        )
        self._pending.append(request)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await request.future

    async def sync(self, policy: Any) -> None:
        """Serve the policy's current weights: in-process they are already shared, so nothing
        is copied; a different model object replaces the sampler's model."""
        if isinstance(policy, torch.nn.Module) and policy is not self.model:
            self.model = policy

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=True)

    # ---- batching ---------------------------------------------------------------------------

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            seen = -1
            while seen != len(self._pending):  # wait for a turn in which nothing new arrived
                seen = len(self._pending)
                await asyncio.sleep(0)
            batch, self._pending = self._pending, []
            by_adapter: dict[str | None, list[_Request]] = {}
            for r in batch:
                by_adapter.setdefault(r.adapter, []).append(r)
            for adapter, requests in by_adapter.items():
                threads = self.threads or torch.get_num_threads()
                try:
                    if self.inline:  # the trainer's thread: one OpenMP team (see `inline`)
                        results = self._generate(requests, adapter, threads)
                    else:
                        results = await loop.run_in_executor(
                            self._executor, self._generate, requests, adapter, threads
                        )
                except Exception as e:  # noqa: BLE001 - handed to every waiting caller
                    for r in requests:
                        if not r.future.done():
                            r.future.set_exception(e)
                    continue
                for r, completions in zip(requests, results):
                    if not r.future.done():
                        r.future.set_result(completions)

    def _rows(self, request: _Request) -> list[GenerationRow]:
        p = request.params
        stop_ids = tuple(sorted(set(p.stop_token_ids) | set(self._eos_ids())))
        max_pos = self._max_positions()
        rows = []
        for i, prompt in enumerate(request.prompts):
            budget = p.max_new_tokens
            if max_pos is not None:  # prompts that do not fit were refused in sample()
                budget = min(budget, max_pos - len(prompt))
            for j in range(p.n):
                rows.append(
                    GenerationRow(
                        prompt=tuple(prompt),
                        max_new_tokens=budget,
                        temperature=p.temperature,
                        top_p=p.top_p,
                        top_k=p.top_k,
                        stop_token_ids=stop_ids,
                        stop=tuple(p.stop),
                        seed=mix_seed(request.base_seed, i, j),
                    )
                )
        return rows

    def _generate(
        self, requests: list[_Request], adapter: str | None, threads: int
    ) -> list[list[Completion]]:
        """Every request of one adapter in as few batches as fit (inline or on the worker)."""
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        rows_per_request = [self._rows(r) for r in requests]
        rows = [row for rs in rows_per_request for row in rs]
        order = sorted(range(len(rows)), key=lambda k: len(rows[k].prompt))  # less padding
        results: list[RowResult | None] = [None] * len(rows)
        with self._policy(adapter) as model:
            for s in range(0, len(order), self.max_batch_size):
                chunk = order[s : s + self.max_batch_size]
                out = generate_rows(
                    model, self.tokenizer, [rows[k] for k in chunk], pad_id=self._pad_id()
                )
                for k, res in zip(chunk, out):
                    results[k] = res
                self.stats.generations += 1
        self.stats.requests += len(requests)
        self.stats.rows += len(rows)
        answers, k = [], 0
        for r, rs in zip(requests, rows_per_request):
            completions = []
            for j in range(len(rs)):
                res = results[k + j]
                assert res is not None
                self.stats.tokens += len(res.tokens)
                completions.append(
                    Completion(
                        prompt_index=j // r.params.n,
                        token_ids=tuple(res.tokens),
                        logprobs=tuple(res.logprobs),
                        finish_reason=res.finish_reason,  # type: ignore[arg-type]
                        text=self.tokenizer.decode(res.tokens, skip_special_tokens=True),
                    )
                )
            answers.append(completions)
            k += len(rs)
        return answers

    # ---- model state -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _policy(self, adapter: str | None) -> Iterator[torch.nn.Module]:
        """The module to run for ``adapter``, in eval mode, restoring the model's state after."""
        model = self.model
        was_training = model.training
        _set_training(model, False)
        try:
            if adapter is None:
                yield _runnable(model)
            elif adapter == BASE_ADAPTER:
                with reference_mode(model):
                    yield _runnable(model)
            else:
                with _active_adapter(model, adapter):
                    yield _runnable(model)
        finally:
            _set_training(model, was_training)

    def _eos_ids(self) -> list[int]:
        """The model's end-of-turn ids (`burnish.models.chat.end_token_ids`: tokenizer EOS,
        generation-config EOS ids, the template's end-of-turn token); they always stop."""
        if self._end_ids is None:
            gen = getattr(self.model, "generation_config", None)
            self._end_ids = list(end_token_ids(self.tokenizer, gen))
        return self._end_ids

    def _max_positions(self) -> int | None:
        """The model's ``max_position_embeddings`` (None if it has none), read once per model
        object: a transformers config attribute read costs microseconds, twice per request."""
        if self._positions is None or self._positions[0] is not self.model:
            config = getattr(self.model, "config", None)
            self._positions = (self.model, getattr(config, "max_position_embeddings", None))
        return self._positions[1]

    def _pad_id(self) -> int:
        for pid in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if pid is not None:
                return int(pid)
        return 0

    def _check_prompts(self, prompts: list[list[int]]) -> None:
        if not prompts:
            raise ValueError("sample() needs at least one prompt, got an empty list")
        max_pos = self._max_positions()
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty; prompts need at least one token")
            if max_pos is not None and len(p) >= max_pos:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens; the model accepts at most {max_pos} "
                    "positions in all"
                )

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is None:
            return
        if not is_lora(self.model):
            raise ValueError(
                f"adapter={adapter!r} needs a PEFT model, but the sampler holds a plain "
                f"{type(self.model).__name__}; use adapter=None"
            )
        if adapter != BASE_ADAPTER and adapter not in self.model.peft_config:
            raise ValueError(
                f"unknown adapter {adapter!r}; loaded: {sorted(self.model.peft_config)} "
                f"(or {BASE_ADAPTER!r} for the base model)"
            )


def _runnable(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model to call: a PEFT model's base model (its LoRA layers are inside)."""
    return model.get_base_model() if is_lora(model) else model


@contextlib.contextmanager
def _active_adapter(model: Any, name: str) -> Iterator[None]:
    """Make ``name`` the active adapter for the block, then restore the active adapter and every
    parameter's ``requires_grad`` (PEFT's set_adapter also changes which weights train)."""
    previous = model.active_adapter
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.set_adapter(name)
        yield
    finally:
        model.set_adapter(previous)
        for p, flag in flags:
            p.requires_grad_(flag)


def _set_training(model: torch.nn.Module, training: bool) -> None:
    """``model.train(training)`` as one flat loop over the modules.

    `Module.train` recurses through every module and sets the flag through `Module.__setattr__`,
    once per sampling batch over burnish-tiny's 341 modules (PEFT's wrappers included); its
    share of a step is in `benchmarks/RESULTS.md`. Where a module overrides `train` (other than
    transformers' own, which only recasts hub kernels when there are any) it is called instead.
    """
    from transformers import PreTrainedModel

    modules = list(model.modules())
    for m in modules:
        train = type(m).train
        plain = train is torch.nn.Module.train or (
            train is PreTrainedModel.train and not getattr(m, "use_kernels", False)
        )
        if not plain:
            model.train(training)
            return
    for m in modules:
        if m.training != training:
            object.__setattr__(m, "training", training)
