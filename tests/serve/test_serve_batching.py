"""Batching across adapters: mixed-adapter batches are exact, many concurrent requests all
succeed, greedy answers equal `LocalSampler`'s, and the adapter cache evicts the least recently
used adapter that no running batch needs."""

import asyncio
import time

import pytest

from burnish.serve.adapters import AdapterStore
from burnish.serve.engine import EngineStats

BASE = "burnish-tiny"
ADAPTERS = ("a0", "a1", "a2")
PROMPTS = ["12+34=", "hello", "7*6=", "a"]


async def _complete_all(served, jobs: list[tuple[str, str, dict]]) -> list:
    async with served.async_client() as client:
        return await asyncio.gather(
            *[
                client.completions.create(
                    model=model, prompt=prompt, extra_body={"return_token_ids": True}, **kw
                )
                for model, prompt, kw in jobs
            ]
        )


def _tokens(response) -> list[list[int]]:
    return [c.model_extra["token_ids"] for c in response.choices]


@pytest.mark.parametrize("model", [BASE, *ADAPTERS])
def test_greedy_answers_equal_local_samplers(served, local_greedy, model):
    tok = served.state.tokenizer
    ids = [tok.encode(p) for p in PROMPTS]
    (r,) = asyncio.run(_complete_all(served, [(model, ids, {"max_tokens": 12, "temperature": 0})]))
    expected = local_greedy(ids, None if model == BASE else model, 12)
    assert _tokens(r) == [list(c.token_ids) for c in expected]


def _first_batch_when_queued(engine, monkeypatch, count: int) -> None:
    """Hold the engine's first batch until ``count`` requests are queued: the requests reach
    the server one HTTP parse at a time, and on a loaded machine the batcher may otherwise start
    before the rest arrive (what this checks is how queued requests are batched)."""
    take, opened = engine._take_batch, []

    def take_batch():
        if not opened and len(engine._pending) < count:
            return []  # `_drain` yields a turn and looks again
        opened.append(True)
        return take()

    monkeypatch.setattr(engine, "_take_batch", take_batch)


def test_mixed_adapter_batches_equal_one_adapter_at_a_time(served, monkeypatch):
    """Requests for every adapter at once run in shared batches (mixed adapter_names) and give
    exactly the tokens each request gets alone: greedy and seeded sampling."""
    models = [BASE, *ADAPTERS]
    jobs = [
        (m, p, {"max_tokens": 10, **kw})
        for m in models
        for p in PROMPTS
        for kw in ({"temperature": 0}, {"temperature": 1.0, "seed": 7, "n": 2})
    ]
    alone = [_tokens(asyncio.run(_complete_all(served, [job]))[0]) for job in jobs]
    served.state.engine.stats = EngineStats()
    _first_batch_when_queued(served.state.engine, monkeypatch, len(jobs))
    together = [_tokens(r) for r in asyncio.run(_complete_all(served, jobs))]
    stats = served.state.engine.stats
    assert stats.max_adapters_per_batch >= 3, stats  # the adapters did share batches
    assert stats.batches < len(jobs), stats
    assert together == alone
    by_model = {m: [t for (mm, _, _), t in zip(jobs, alone) if mm == m] for m in models}
    assert len({str(v) for v in by_model.values()}) == len(models)  # adapters really differ


def test_200_concurrent_requests_over_3_adapters_all_succeed(served):
    jobs = [
        (ADAPTERS[i % 3], f"{i}+{i}=", {"max_tokens": 8, "temperature": 1.0, "seed": i})
        for i in range(200)
    ]
    start = time.monotonic()
    responses = asyncio.run(_complete_all(served, jobs))
    elapsed = time.monotonic() - start
    assert elapsed < 60, f"200 requests took {elapsed:.1f} s"
    assert [r.model for r in responses] == [m for m, _, _ in jobs]
    assert all(len(r.choices) == 1 and r.choices[0].finish_reason for r in responses)
    again = asyncio.run(_complete_all(served, jobs[:5]))  # seeded: same answers under load
    assert [_tokens(r) for r in again] == [_tokens(r) for r in responses[:5]]


def test_lru_evicts_the_least_recently_used_adapter_and_reloads_it(
    server_factory, adapter_root, local_greedy
):
    """max_cpu_loras=2 with three adapters: registering the third evicts the first; a request
    for an evicted adapter loads it back (evicting the least recently used) and answers exactly
    as `LocalSampler` does."""
    adapters = {name: str(adapter_root / name) for name in ADAPTERS}
    small = server_factory(adapters, max_loras=1, max_cpu_loras=2)
    prompt = small.state.tokenizer.encode("hi")
    greedy = {"max_tokens": 8, "temperature": 0}
    try:
        store = small.state.engine.store
        assert store.loaded_names() == ["a1", "a2"] and store.evictions == 1
        assert set(store.registered) == set(ADAPTERS)  # evicted adapters stay served
        answers = {}
        for name, loaded, evictions in [
            ("a0", ["a2", "a0"], 2),
            ("a2", ["a0", "a2"], 2),  # a2 used: now the most recent
            ("a1", ["a2", "a1"], 3),
            ("a0", ["a1", "a0"], 4),
        ]:
            (r,) = asyncio.run(_complete_all(small, [(name, prompt, greedy)]))
            assert (store.loaded_names(), store.evictions) == (loaded, evictions), name
            answers.setdefault(name, []).append(_tokens(r)[0])
    finally:
        small.stop()
    for name, got in answers.items():
        expected = list(local_greedy([prompt], name, 8)[0].token_ids)
        assert all(g == expected for g in got), (name, got, expected)


def test_eviction_spares_adapters_the_running_batch_needs(adapter_root):
    from burnish.models.load import load_model

    model, _ = load_model(BASE)
    store = AdapterStore(model, max_cpu_loras=2)
    specs = {n: store.check(n, str(adapter_root / n), runtime=False) for n in ADAPTERS}
    store.load(specs["a1"])
    store.load(specs["a2"])
    assert store.loaded_names() == ["a1", "a2"]  # a1 is the least recently used
    store.ensure_one(specs["a0"], pinned={"a0", "a1"})  # a batch of a0 and a1
    assert store.loaded_names() == ["a1", "a0"], store.loaded_names()  # a2 went, not a1
    with pytest.raises(RuntimeError, match="max_cpu_loras"):
        store.ensure_one(specs["a2"], pinned={"a0", "a1", "a2"})


def test_a_request_cancelled_before_its_batch_is_never_sampled():
    """A closed stream cancels its request (`cancel_when_closed`); one that has not started yet
    is dropped from the queue instead of sampled."""
    from burnish.models.load import load_model
    from burnish.serve.app import build_state
    from burnish.serve.engine import Sampling, cancel_when_closed

    model, tok = load_model(BASE)
    engine = build_state(model, tok, model_name=BASE, threads=1).engine

    async def scenario():
        kept = asyncio.ensure_future(engine.generate([[5, 6]], Sampling(max_tokens=4)))
        task, queue = engine.start_stream([[7, 8]], Sampling(max_tokens=4))

        async def events():
            await asyncio.sleep(0)  # both requests queue; the batch has not formed yet
            yield "first"
            await asyncio.sleep(3600)  # never reached: the client closes after one event

        stream = cancel_when_closed(task, events())
        assert await stream.__anext__() == "first"
        await stream.aclose()
        assert len(engine._pending) == 2  # the cancelled one is still queued
        (out,) = await kept
        return out, task

    try:
        out, task = asyncio.run(scenario())
    finally:
        engine.close()
    assert task.cancelled() and len(out.rows) == 1
    assert engine.stats.requests == 1 and engine.stats.rows == 1, engine.stats
