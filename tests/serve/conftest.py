"""One `burnish serve` for the whole session: burnish-tiny, three tiny adapters, uvicorn on a free
loopback port in a thread (so tests can also look at the engine's counters and adapter cache)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import torch
import uvicorn

from burnish.models.load import load_model
from burnish.models.lora import attach_lora, load_adapter, save_adapter
from burnish.rollout import LocalSampler, SamplingParams
from burnish.serve.app import build_state, create_app
from burnish.serve.state import ServerState

ADAPTERS = ("a0", "a1", "a2")
BASE = "burnish-tiny"


def make_adapter(directory: Path, seed: int, rank: int = 4) -> Path:
    """A LoRA adapter of burnish-tiny whose B matrices are random (so it changes the outputs)."""
    model, _ = load_model(BASE)
    torch.manual_seed(seed)
    policy = attach_lora(model, rank=rank)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    return save_adapter(policy, directory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running server and what the tests need to talk to it and check it."""

    url: str
    state: ServerState
    root: Path
    """The adapter root: every adapter of the session lives below it."""
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.v1, api_key="unused", max_retries=0, timeout=60)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.v1, api_key="unused", max_retries=0, timeout=120)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.state.engine.close()


def start_server(root: Path, adapters: dict[str, str], **limits) -> Served:
    """Build the server state for burnish-tiny and run uvicorn on a free port in a thread."""
    model, tok = load_model(BASE)
    state = build_state(
        model, tok, model_name=BASE, adapters=adapters, adapter_root=root,
        allow_runtime_lora=True, threads=1, seed=0, **limits,
    )  # fmt: skip
    port = free_port()
    config = uvicorn.Config(create_app(state), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start within 30 s"
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", state, root, server, thread)


@pytest.fixture(scope="session")
def adapter_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adapters")
    for i, name in enumerate(ADAPTERS):
        make_adapter(root / name, seed=i)
    return root


@pytest.fixture(scope="session")
def served(adapter_root) -> Served:
    adapters = {name: str(adapter_root / name) for name in ADAPTERS}
    s = start_server(adapter_root, adapters, max_loras=8, max_cpu_loras=16)
    yield s
    s.stop()


@pytest.fixture(scope="session", name="make_adapter")
def make_adapter_fixture():
    """`make_adapter(directory, seed, rank=4)` for tests that need adapters of their own."""
    return make_adapter


@pytest.fixture(scope="session")
def server_factory(adapter_root):
    """Start another server over the session's adapter root: ``server_factory(adapters,
    **limits)``; the caller stops it."""
    return lambda adapters, **limits: start_server(adapter_root, adapters, **limits)


@pytest.fixture(scope="session")
def reference(adapter_root):
    """burnish-tiny with the same adapters loaded in process, for `LocalSampler` references."""
    model, tok = load_model(BASE)
    for name in ADAPTERS:
        model = load_adapter(model, adapter_root / name, adapter_name=name)
    return model, tok


@pytest.fixture(scope="session")
def local_greedy(reference):
    """`LocalSampler`'s greedy completions: ``local_greedy(prompts, adapter, max_tokens)``
    (adapter None: the base model)."""
    model, tok = reference

    def sample(prompts: list[list[int]], adapter: str | None, max_tokens: int = 12):
        sampler = LocalSampler(model, tok, threads=1)
        params = SamplingParams(max_new_tokens=max_tokens, temperature=0.0)
        try:
            return asyncio.run(sampler.sample(prompts, params, adapter=adapter or "base"))
        finally:
            sampler.close()

    return sample
