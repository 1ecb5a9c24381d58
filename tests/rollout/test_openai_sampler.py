"""OpenAISampler against a small vLLM-style server started in the test (tiny model behind it)."""

import asyncio
import socket
import threading
import time

import pytest
import torch
import uvicorn
from fastapi import FastAPI, HTTPException

from burnish.models.logprobs import sequence_logprobs
from burnish.models.lora import attach_lora, is_lora, load_adapter
from burnish.models.tiny import tiny_model
from burnish.rollout import LocalSampler, Sampler, SamplingParams
from burnish.rollout.openai_sampler import (
    OpenAISampler,
    SamplerClientError,
    SamplerServerError,
)


class FakeVLLM:
    """Answers /v1/completions with a tiny model, the vLLM way; loads LoRA adapters at runtime."""

    def __init__(self) -> None:
        self.model, self.tok = tiny_model()
        self.sampler = LocalSampler(self.model, self.tok)
        self.requests: list[dict] = []
        self.lora_calls: list[tuple[str, dict]] = []
        self.fail = False
        self.fail_next = 0  # answer 503 to this many more completion requests
        self.status = 500
        self.legacy = False  # answer without `token_ids` (older vLLM)
        self.app = FastAPI()
        self.app.post("/v1/completions")(self.completions)
        self.app.post("/v1/load_lora_adapter")(self.load)
        self.app.post("/v1/unload_lora_adapter")(self.unload)
        self.app.get("/v1/models")(self.models)

    async def models(self) -> dict:
        names = ["tiny", *(getattr(self.model, "peft_config", {}) or {})]
        return {"object": "list", "data": [{"id": n, "object": "model"} for n in names]}

    async def completions(self, body: dict) -> dict:
        self.requests.append(body)
        if self.fail:
            raise HTTPException(self.status, "engine died")
        if self.fail_next > 0:
            self.fail_next -= 1
            raise HTTPException(503, "busy")
        params = SamplingParams(
            max_new_tokens=body["max_tokens"],
            temperature=body["temperature"],
            top_p=body["top_p"],
            top_k=body.get("top_k", 0),
            n=body["n"],
            stop=tuple(body.get("stop", ())),
            stop_token_ids=tuple(body.get("stop_token_ids", ())),
            seed=body.get("seed"),
        )
        name = body["model"]
        adapter = None if name == "tiny" else name
        if name == "tiny" and is_lora(self.model):
            adapter = "base"
        out = await self.sampler.sample([body["prompt"]], params, adapter=adapter)
        choices = []
        for i, c in enumerate(out):
            choice = {
                "index": i,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "logprobs": {
                    "tokens": [f"token_id:{t}" for t in c.token_ids],
                    "token_logprobs": list(c.logprobs),
                },
            }
            if not self.legacy:
                choice["token_ids"] = list(c.token_ids)
            choices.append(choice)
        return {"object": "text_completion", "model": name, "choices": choices[::-1]}

    async def load(self, body: dict) -> str:
        self.lora_calls.append(("load", body))
        self.model = load_adapter(self.model, body["lora_path"], adapter_name=body["lora_name"])
        await self.sampler.sync(self.model)
        return "ok"

    async def unload(self, body: dict) -> str:
        self.lora_calls.append(("unload", body))
        if body["lora_name"] not in getattr(self.model, "peft_config", {}):
            raise HTTPException(404, "no such adapter")
        self.model.delete_adapter(body["lora_name"])
        return "ok"


@pytest.fixture
def server():
    fake = FakeVLLM()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not srv.started:
        assert time.time() < deadline, "fake server did not start"
        time.sleep(0.01)
    try:
        yield fake, f"http://127.0.0.1:{port}/v1"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _check_logprobs(model, prompt, completion):
    full = torch.tensor([prompt + list(completion.token_ids)])
    with torch.no_grad():
        logp, _ = sequence_logprobs(model, full)
    torch.testing.assert_close(
        torch.tensor(completion.logprobs), logp[0, len(prompt) :], atol=1e-5, rtol=0
    )


def test_token_ids_and_logprobs_round_trip(server):
    fake, url = server
    sampler = OpenAISampler(url, "tiny")
    assert isinstance(sampler, Sampler)
    prompts = [fake.tok.encode("hello"), fake.tok.encode("a longer prompt")]
    params = SamplingParams(max_new_tokens=8, n=2, seed=3, stop=("zz",))
    out = asyncio.run(sampler.sample(prompts, params))
    assert [c.prompt_index for c in out] == [0, 0, 1, 1]
    for c in out:
        assert len(c.token_ids) == len(c.logprobs) > 0
        _check_logprobs(fake.model, prompts[c.prompt_index], c)
    body = fake.requests[0]
    assert body["prompt"] in prompts and body["logprobs"] == 1 and body["n"] == 2
    assert body["return_token_ids"] and body["include_stop_str_in_output"]
    assert body["stop"] == ["zz"] and body["model"] == "tiny"
    again = asyncio.run(sampler.sample(prompts, params))
    assert [c.token_ids for c in again] == [c.token_ids for c in out]
    fake.legacy = True  # older servers: ids only as "token_id:N" strings
    legacy = asyncio.run(sampler.sample(prompts, params))
    assert [c.token_ids for c in legacy] == [c.token_ids for c in out]


def test_sync_loads_versioned_adapters_and_samples_from_them(server, tmp_path):
    fake, url = server
    policy = attach_lora(tiny_model()[0], rank=4)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    sampler = OpenAISampler(url, "tiny", adapter_dir=tmp_path, scope="run1")
    v1 = f"run1-{sampler.session}-v1"
    prompt = fake.tok.encode("abc")
    asyncio.run(sampler.sync(policy))
    assert fake.lora_calls[0][0] == "load"
    assert fake.lora_calls[0][1]["lora_name"] == v1 == sampler.current_adapter
    assert (tmp_path / v1 / "adapter_model.safetensors").is_file()
    c = asyncio.run(sampler.sample([prompt], SamplingParams(max_new_tokens=6, seed=0)))[0]
    assert fake.requests[-1]["model"] == v1
    _check_logprobs(policy, prompt, c)
    base = asyncio.run(sampler.sample([prompt], SamplingParams(max_new_tokens=6, seed=0), "base"))[
        0
    ]
    assert fake.requests[-1]["model"] == "tiny"
    _check_logprobs(tiny_model()[0], prompt, base)
    asyncio.run(sampler.sync(policy))
    assert [k for k, _ in fake.lora_calls] == ["load", "load", "unload"]
    assert fake.lora_calls[2][1]["lora_name"] == v1
    assert sampler.current_adapter == f"run1-{sampler.session}-v2"
    assert not (tmp_path / v1).exists()  # the unloaded version's files are gone


def test_a_restarted_run_never_collides_and_unloads_what_it_left(server, tmp_path):
    """A second sampler of the same scope (a restart or a resume) takes fresh names and unloads
    the first session's adapters; another scope's adapter (a second run) is left alone."""
    fake, url = server
    policy = attach_lora(tiny_model()[0], rank=4)
    first = OpenAISampler(url, "tiny", adapter_dir=tmp_path, scope="run1")
    other = OpenAISampler(url, "tiny", adapter_dir=tmp_path, scope="run2")
    asyncio.run(first.sync(policy))
    asyncio.run(other.sync(policy))
    second = OpenAISampler(url, "tiny", adapter_dir=tmp_path, scope="run1")
    asyncio.run(second.sync(policy))
    loaded = set(fake.model.peft_config)
    assert second.current_adapter in loaded and other.current_adapter in loaded
    assert first.current_adapter not in loaded
    assert not (tmp_path / first.current_adapter).exists()  # its files are gone too
    assert second.current_adapter != first.current_adapter


def test_rank_above_the_servers_limit_is_refused_before_sending(server, tmp_path):
    fake, url = server
    policy = attach_lora(tiny_model()[0], rank=8)
    sampler = OpenAISampler(url, "tiny", adapter_dir=tmp_path, max_lora_rank=4)
    with pytest.raises(SamplerClientError, match="rank 8 exceeds the server's --max-lora-rank 4"):
        asyncio.run(sampler.sync(policy))
    assert fake.lora_calls == []


def test_server_errors_are_retried_client_errors_are_not(server):
    fake, url = server
    sampler = OpenAISampler(url, "tiny", max_retries=2, retry_backoff=0.01)
    fake.fail_next = 2  # two 503s, then an answer
    out = asyncio.run(sampler.sample([[5, 6]], SamplingParams(max_new_tokens=2)))
    assert len(out) == 1 and len(fake.requests) == 3
    fake.fail, fake.status = True, 400
    n = len(fake.requests)
    with pytest.raises(SamplerClientError, match="HTTP 400"):
        asyncio.run(sampler.sample([[5, 6]], SamplingParams(max_new_tokens=2)))
    assert len(fake.requests) == n + 1  # not retried
    fake.status = 500
    with pytest.raises(SamplerServerError, match=r"HTTP 500.*after 2 retries"):
        asyncio.run(sampler.sample([[5, 6]], SamplingParams(max_new_tokens=2)))
    assert len(fake.requests) == n + 4


def test_a_seeded_sampler_and_its_forks_repeat_their_samples(server):
    fake, url = server
    prompt = fake.tok.encode("abc")
    params = SamplingParams(max_new_tokens=8)

    def draw(sampler):
        return [asyncio.run(sampler.sample([prompt], params))[0].token_ids for _ in range(3)]

    a, b = OpenAISampler(url, "tiny", seed=7), OpenAISampler(url, "tiny", seed=7)
    assert draw(a) == draw(b)
    assert draw(a.fork(3)) == draw(b.fork(3)) != draw(a.fork(4))


def test_server_failure_raises(server, monkeypatch):
    fake, url = server
    fake.fail = True
    with pytest.raises(SamplerServerError, match="HTTP 500"):
        asyncio.run(
            OpenAISampler(url, "tiny", max_retries=0).sample(
                [[5, 6]], SamplingParams(max_new_tokens=2)
            )
        )
    with pytest.raises(ValueError, match="'NO_SUCH_KEY'"):
        OpenAISampler(url, "tiny", api_key_env="NO_SUCH_KEY")
