"""`burnish serve` throughput against sequential HF ``generate``, same model, prompts and work.

The server runs as its own process (``burnish serve --threads 1``) with burnish-tiny and three
rank-8 LoRA adapters made here; an async HTTP client keeps ``c`` completion requests in flight
(c = 1, 8, 64) over 1 or 3 adapters (round-robin). The baseline, in this process with 1 torch
thread, is what a script without a server does: one ``model.generate`` call per request, one
after the other, switching the PEFT adapter before each. Both sample at temperature 1 and always
produce exactly ``--new-tokens`` tokens (``ignore_eos`` on the server, ``min_new_tokens`` in
``generate``), so requests/s and tokens/s measure the same work; ratios are server / baseline.

    python benchmarks/serve.py [--new-tokens 32] [--requests 24]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from burnish.models.load import load_model
from burnish.models.lora import attach_lora, load_adapter, save_adapter
from burnish.models.threads import set_threads

ADAPTERS = ("b0", "b1", "b2")


def make_adapters(root: Path) -> dict[str, str]:
    """Three rank-8 adapters of burnish-tiny with random B matrices."""
    out = {}
    for i, name in enumerate(ADAPTERS):
        model, _ = load_model("burnish-tiny")
        torch.manual_seed(i)
        policy = attach_lora(model, rank=8)
        with torch.no_grad():
            for n, p in policy.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05)
        out[name] = str(save_adapter(policy, root / name))
    return out


def prompts(tok, n: int) -> list[str]:
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": f"{i * 13 % 97}*{i % 9 + 2}+{i * 7 % 50}=?"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(n)
    ]


def start_server(adapters: dict[str, str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-c", "from burnish.cli import app; app()", "serve",
               "--model", "burnish-tiny", "--port", str(port), "--threads", "1"]  # fmt: skip
    for name, path in adapters.items():
        command += ["--adapter", f"{name}={path}"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("burnish serve did not start within 120 s")


async def drive(url: str, texts: list[str], models: list[str], c: int, n_req: int, new: int):
    """Send ``n_req`` requests with ``c`` in flight; returns (seconds, completion tokens)."""
    limit = asyncio.Semaphore(c)
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:

        async def one(i: int) -> int:
            body = {"model": models[i % len(models)], "prompt": texts[i % len(texts)],
                    "max_tokens": new, "temperature": 1.0, "seed": i, "ignore_eos": True}  # fmt: skip
            async with limit:
                r = await client.post("/v1/completions", json=body)
            r.raise_for_status()
            return r.json()["usage"]["completion_tokens"]

        await asyncio.gather(*[one(i) for i in range(min(c, 4))])  # warm-up
        t0 = time.perf_counter()
        tokens = await asyncio.gather(*[one(i) for i in range(n_req)])
        return time.perf_counter() - t0, sum(tokens)


def baseline(adapters: dict[str, str], texts: list[str], n_adapters: int, n_req: int, new: int):
    """Sequential ``generate``, one request at a time; returns (seconds, tokens)."""
    model, tok = load_model("burnish-tiny")
    for name, path in adapters.items():
        model = load_adapter(model, path, adapter_name=name)
    model.eval()
    names = ADAPTERS[:n_adapters]
    ids = [tok(t, return_tensors="pt") for t in texts]

    def one(i: int) -> int:
        if n_adapters:
            model.set_adapter(names[i % len(names)])
        enc = ids[i % len(ids)]
        with torch.inference_mode():
            out = model.generate(
                **enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                max_new_tokens=new, min_new_tokens=new, pad_token_id=tok.pad_token_id,
            )  # fmt: skip
        return out.shape[1] - enc["input_ids"].shape[1]

    for i in range(2):
        one(i)
    t0 = time.perf_counter()
    tokens = sum(one(i) for i in range(n_req))
    return time.perf_counter() - t0, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--requests", type=int, default=24, help="per run at concurrency 1")
    args = parser.parse_args()
    set_threads(1)
    root = Path(tempfile.mkdtemp(prefix="burnish-serve-bench-"))
    adapters = make_adapters(root)
    _, tok = load_model("burnish-tiny")
    texts = prompts(tok, 64)
    base = {n: baseline(adapters, texts, n, args.requests, args.new_tokens) for n in (1, 3)}
    proc, url = start_server(adapters)
    rows = []
    try:
        for n_adapters in (1, 3):
            models = list(ADAPTERS[:n_adapters])
            hf_s, hf_tok = base[n_adapters]
            hf_rps, hf_tps = args.requests / hf_s, hf_tok / hf_s
            for c in (1, 8, 64):
                n_req = max(args.requests, 2 * c)
                s, tokens = asyncio.run(drive(url, texts, models, c, n_req, args.new_tokens))
                rps, tps = n_req / s, tokens / s
                rows.append((n_adapters, c, n_req, rps, tps, hf_rps, hf_tps))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    load = os.getloadavg()[0]
    print(f"burnish-tiny, {args.new_tokens} new tokens per request, temperature 1, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}")  # fmt: skip
    print("| adapters | concurrency | requests | serve req/s | serve tok/s | generate req/s "
          "| generate tok/s | req/s ratio | tok/s ratio |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n_adapters, c, n_req, rps, tps, hf_rps, hf_tps in rows:
        print(f"| {n_adapters} | {c} | {n_req} | {rps:.1f} | {tps:.0f} | {hf_rps:.1f} "
              f"| {hf_tps:.0f} | {rps / hf_rps:.2f}x | {tps / hf_tps:.2f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
