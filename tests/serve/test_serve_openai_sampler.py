"""`OpenAISampler`, unchanged, against `burnish serve`: sampling, `sync` (runtime adapter loading,
the previous version unloaded) and `prompt_logprobs` (the served teacher of distillation)."""

import asyncio

import httpx
import torch

from burnish.models.load import load_model
from burnish.models.logprobs import sequence_logprobs
from burnish.models.lora import attach_lora
from burnish.rollout import LocalSampler, SamplingParams
from burnish.rollout.openai_sampler import OpenAISampler

BASE = "burnish-tiny"


def _local(model, tok, prompts, params, adapter=None):
    sampler = LocalSampler(model, tok, threads=1)
    try:
        return asyncio.run(sampler.sample(prompts, params, adapter=adapter))
    finally:
        sampler.close()


def test_sample_matches_local_sampler_with_logprobs(served, reference):
    model, tok = reference
    prompts = [tok.encode("12+34="), tok.encode("hello")]
    params = SamplingParams(max_new_tokens=10, temperature=0.0, n=2)
    remote = OpenAISampler(served.v1, BASE)
    for adapter in ("base", "a0", "a2"):
        got = asyncio.run(remote.sample(prompts, params, adapter=adapter))
        want = _local(model, tok, prompts, params, adapter)
        assert [c.token_ids for c in got] == [c.token_ids for c in want], adapter
        assert [c.prompt_index for c in got] == [0, 0, 1, 1]
        assert [c.finish_reason for c in got] == [c.finish_reason for c in want]
        for g, w in zip(got, want):
            torch.testing.assert_close(
                torch.tensor(g.logprobs), torch.tensor(w.logprobs), atol=1e-4, rtol=0
            )


def test_seeded_sampling_with_stops_round_trips(served):
    remote = OpenAISampler(served.v1, BASE)
    params = SamplingParams(
        max_new_tokens=12, temperature=0.9, top_p=0.95, top_k=20, n=3, seed=5,
        stop=("e",), stop_token_ids=(40,),
    )  # fmt: skip
    prompts = [[10, 11, 12], [13, 14]]
    first = asyncio.run(remote.sample(prompts, params, adapter="a1"))
    again = asyncio.run(remote.sample(prompts, params, adapter="a1"))
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert len(first) == 6 and len({c.token_ids for c in first}) > 1
    for c in first:
        assert len(c.token_ids) == len(c.logprobs) >= 1
        if c.finish_reason == "stop":
            assert c.token_ids[-1] in (40, 2) or "e" in c.text, c


def test_sync_serves_the_policy_and_unloads_the_previous_version(served, adapter_root):
    model, tok = load_model(BASE)
    torch.manual_seed(9)
    policy = attach_lora(model, rank=4)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    remote = OpenAISampler(served.v1, BASE, adapter_dir=adapter_root / "sync")
    prompts = [tok.encode("7*6=")]
    params = SamplingParams(max_new_tokens=8, temperature=0.0)
    v1, v2 = f"policy-{remote.session}-v1", f"policy-{remote.session}-v2"
    asyncio.run(remote.sync(policy))
    assert remote.current_adapter == v1
    assert v1 in served.state.engine.store.registered
    got = asyncio.run(remote.sample(prompts, params))  # adapter=None: the synced policy
    want = _local(policy, tok, prompts, params)
    assert got[0].token_ids == want[0].token_ids
    with torch.no_grad():  # a training step later
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.mul_(-1.0)
    asyncio.run(remote.sync(policy))
    registered = served.state.engine.store.registered
    assert v2 in registered and v1 not in registered
    got2 = asyncio.run(remote.sample(prompts, params))
    assert got2[0].token_ids == _local(policy, tok, prompts, params)[0].token_ids
    assert got2[0].token_ids != got[0].token_ids
    httpx.post(served.v1 + "/unload_lora_adapter", json={"lora_name": v2}, timeout=30)


def test_prompt_logprobs_equal_the_models(served, reference):
    model, tok = reference
    sequences = [tok.encode("12+34=46"), tok.encode("hi"), tok.encode("abcdefgh")]
    remote = OpenAISampler(served.v1, BASE)
    for adapter in ("base", "a1"):
        got = asyncio.run(remote.prompt_logprobs(sequences, adapter=adapter))
        for seq, lp in zip(sequences, got):
            if adapter == "base":
                with model.disable_adapter():
                    expected, _ = sequence_logprobs(model, torch.tensor([seq]))
            else:
                previous = model.active_adapter
                model.set_adapter(adapter)
                expected, _ = sequence_logprobs(model, torch.tensor([seq]))
                model.set_adapter(previous)
            torch.testing.assert_close(torch.tensor(lp), expected[0], atol=1e-4, rtol=0)


def test_an_api_key_guards_the_v1_routes(server_factory, monkeypatch):
    keyed = server_factory({}, api_key="s3cret")
    try:
        assert httpx.get(keyed.url + "/health").status_code == 200
        r = httpx.get(keyed.v1 + "/models")
        assert r.status_code == 401 and r.json() == {"error": "Unauthorized"}
        wrong = httpx.get(keyed.v1 + "/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        monkeypatch.setenv("SERVE_TEST_KEY", "s3cret")
        remote = OpenAISampler(keyed.v1, BASE, api_key_env="SERVE_TEST_KEY")
        params = SamplingParams(max_new_tokens=4, temperature=0.0)
        (completion,) = asyncio.run(remote.sample([[10, 11]], params))
        assert len(completion.token_ids) >= 1
    finally:
        keyed.stop()
