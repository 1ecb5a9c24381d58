"""GPU benchmark: raw vLLM generation throughput against the sampling phase of a burnish RL run.

    python benchmarks/gpu.py --vllm-python /path/to/vllm-env/bin/python          # one GPU
    python benchmarks/gpu.py --device cpu --vllm-python .venv-vllm/bin/python    # CPU smoke run

One command, stopped by itself after ``--time-limit`` seconds (what it measured by then is still
printed and written):

1. the model: ``--model PATH`` (a local directory, or ``burnish-tiny``), else a randomly
   initialised Qwen2-shaped model of ``--size`` (``0.5b`` on a GPU, the Qwen2.5-0.5B shape;
   ``tiny`` on a CPU, two heads of 32 so vLLM's CPU attention takes it) with a byte-level BPE
   tokenizer trained here and the real Qwen2.5 chat template (``tests/chat/real_models.py``),
   saved to a temporary directory: the benchmark needs no model hub;
2. a vLLM OpenAI server on 127.0.0.1 (``tests/vllm_server.py``), LoRA enabled with runtime
   adapter loading, ``--dtype`` as the trainer's;
3. raw vLLM throughput: the prompts every RL step will sample (the first ``steps x prompts``
   train tasks of ``--env``, rendered with the chat template), one concurrent request per prompt
   with ``n = group size``, ``max_tokens`` and the stop ids the RL step uses, sent with plain
   ``httpx`` (no logprobs), through a LoRA adapter of the run's rank (the RL run samples through
   its adapter) and through the base model, after one warm-up batch;
4. the RL run: `burnish.train.loop.train` with ``sampler.kind = "openai"`` on that server, the
   policy on ``--device`` in this process in ``--dtype``, GRPO without dynamic sampling (every
   step samples exactly the prompts measured in 3), token-level TIS, monitors off;
5. the figures: steps/s and the sampling phase's completion tokens/s (sampled tokens over
   ``time/sample``, both from the step metrics, the first step left out as warm-up when there
   are more), their ratio to the raw LoRA figure (the goal: at least 0.80), and the trainer/vLLM
   log-prob mismatch of the trained steps (``mismatch/k3``, ``mismatch/ratio_max``).

A random model rarely samples its end token, so nearly every completion runs to
``max_new_tokens`` in both measurements: the same work, the same tokens. Exit status: 0 when
both throughputs were measured (the ratio below the goal is a finding, not a failure), 2 when
``--device cuda`` finds no CUDA device, 1 when anything else failed (the message says what; the
JSON has it under ``error``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "chat")]  # the helpers live there

import httpx  # noqa: E402
import torch  # noqa: E402

from burnish.config import load_config  # noqa: E402
from burnish.envs.registry import load_env  # noqa: E402
from burnish.models.load import load_model, load_tokenizer, resolve_model_path  # noqa: E402
from burnish.models.lora import attach_lora, save_adapter  # noqa: E402
from burnish.rollout.episode import ChatCodec  # noqa: E402
from burnish.train.loop import train  # noqa: E402

GOAL = 0.80
"""The sampling phase should reach this share of raw vLLM throughput."""
LORA_RANK, LORA_ALPHA = 16, 32.0
RESERVE_S = 30.0
"""Seconds kept back at the end for stopping the server and writing the results."""

SIZES = {  # hidden, layers, heads, kv heads, intermediate, BPE vocabulary, tied embeddings
    "tiny": (64, 2, 2, 2, 128, 1000, False),
    "0.5b": (896, 24, 14, 2, 4864, 32000, True),
    "1.5b": (1536, 28, 12, 2, 8960, 32000, True),
}
"""Model shapes; ``0.5b`` and ``1.5b`` are those of Qwen2.5-0.5B and -1.5B (a smaller vocabulary:
the BPE is trained here)."""

DEFAULTS = {  # size, steps, prompts per step, group size, max new tokens
    "cuda": ("0.5b", 8, 32, 8, 256),
    "cpu": ("tiny", 3, 4, 4, 16),
}


class OutOfTime(Exception):
    """The time limit is near: stop measuring and report."""


class BenchError(RuntimeError):
    """The benchmark could not run; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Deadline:
    end: float

    def left(self) -> float:
        return self.end - time.monotonic()


# ---- the model ------------------------------------------------------------------------------


def corpus(vocab: int, seed: int = 0) -> list[str]:
    """Text for the BPE: the environments' kind of text, then random words (enough distinct
    pairs for the merges to reach `vocab`)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lines = [f"reverse: {''.join(rng.choices(letters, k=rng.randint(3, 8)))}" for _ in range(500)]
    lines += [f"What is {rng.randint(0, 999)} + {rng.randint(0, 999)}?" for _ in range(500)]
    for _ in range(max(20, vocab // 10)):
        words = ("".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(40))
        lines.append(" ".join(words))
    return lines


def build_model(size: str, out: Path, seed: int = 0) -> Path:
    """A random Qwen2 of `size` with a trained BPE and the Qwen2.5 chat template, saved to `out`."""
    from real_models import FIXTURES, build_tokenizer
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    hidden, layers, heads, kv_heads, inter, vocab, tied = SIZES[size]
    fx = FIXTURES["qwen2.5"]
    tok = build_tokenizer(fx, vocab_size=vocab, corpus=corpus(vocab, seed))
    eos_ids = tok.convert_tokens_to_ids(fx.gen_eos)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=tied,
        bos_token_id=tok.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=eos_ids, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def describe_model(model_dir: Path) -> dict:
    """Shape and size of the model in `model_dir` (from its config)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_dir)
    heads = c.num_attention_heads
    hidden, layers, inter, vocab = (
        c.hidden_size,
        c.num_hidden_layers,
        c.intermediate_size,
        c.vocab_size,
    )
    kv = getattr(c, "num_key_value_heads", heads) or heads
    head_dim = getattr(c, "head_dim", None) or hidden // heads
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter
    embed = vocab * hidden * (1 if getattr(c, "tie_word_embeddings", False) else 2)
    return {
        "path": str(model_dir),
        "architecture": (c.architectures or ["?"])[0],
        "parameters": layers * per_layer + embed,
        "vocab": vocab,
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "kv_heads": kv,
        "head_dim": head_dim,
    }


def zero_adapter(model_dir: Path, out: Path) -> Path:
    """A fresh LoRA adapter of the run's rank (B = 0) for the raw measurement, saved to `out`."""
    model, _ = load_model(model_dir)
    return save_adapter(attach_lora(model, rank=LORA_RANK, alpha=LORA_ALPHA), out)


# ---- the prompts and the raw measurement ----------------------------------------------------


def step_prompts(model_dir: Path, env_name: str, seed: int, steps: int, prompts: int):
    """Token ids of the prompts of every RL step (`[step][prompt]`), rendered as the episodes
    render them, and the stop ids they sample with: the first train tasks, in order."""
    codec = ChatCodec(load_tokenizer(model_dir))
    env = load_env(env_name)
    tasks = list(islice(env.tasks("train", seed), steps * prompts))
    ids = [
        codec.encode(codec.render(asyncio.run(env.reset(t)), add_generation_prompt=True))
        for t in tasks
    ]
    return [ids[i : i + prompts] for i in range(0, len(ids), prompts)], sorted(codec.end_ids)


async def raw_batch(client, url: str, model: str, prompts, body: dict) -> tuple[int, float]:
    """Completion tokens and seconds of one step's prompts, all requests in flight at once."""

    async def one(prompt):
        response = await client.post(url, json={**body, "model": model, "prompt": prompt})
        if response.status_code != 200:
            raise BenchError(f"vLLM answered HTTP {response.status_code}: {response.text[:300]}")
        return int(response.json()["usage"]["completion_tokens"])

    t0 = time.perf_counter()
    tokens = await asyncio.gather(*[one(p) for p in prompts])
    return sum(tokens), time.perf_counter() - t0


async def raw_throughput(base_url: str, model: str, batches, body: dict) -> dict:
    """Raw generation throughput of `model` over every step's batch, after one warm-up batch."""
    url = base_url + "/completions"
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=600.0, limits=limits) as client:
        await raw_batch(client, url, model, batches[0], body)  # warm-up: not counted
        tokens = seconds = 0.0
        for prompts in batches:
            n, s = await raw_batch(client, url, model, prompts, body)
            tokens, seconds = tokens + n, seconds + s
    return {
        "batches": len(batches),
        "tokens": int(tokens),
        "seconds": round(seconds, 3),
        "tokens_per_s": tokens / seconds,
    }


async def adapter_request(base_url: str, route: str, body: dict) -> None:
    async with httpx.AsyncClient(timeout=120.0) as client:
        response = await client.post(base_url + route, json=body)
    if response.status_code != 200:
        raise BenchError(f"{route} answered HTTP {response.status_code}: {response.text[:300]}")


def measure_raw(server, model_dir: Path, batches, body: dict, work: Path) -> dict:
    """The raw figures through a LoRA adapter of the run's rank, then through the base model."""
    name = "bench-raw-lora"
    path = zero_adapter(model_dir, work / name)
    asyncio.run(
        adapter_request(
            server.base_url, "/load_lora_adapter", {"lora_name": name, "lora_path": str(path)}
        )
    )
    out = {"lora": asyncio.run(raw_throughput(server.base_url, name, batches, body))}
    asyncio.run(adapter_request(server.base_url, "/unload_lora_adapter", {"lora_name": name}))
    out["base"] = asyncio.run(raw_throughput(server.base_url, server.model, batches, body))
    return out


# ---- the RL run -----------------------------------------------------------------------------


def rl_overrides(args, model_dir: Path, server, run_dir: Path) -> list[str]:
    """The RL run's configuration, as ``--set`` overrides of the defaults."""
    n = args.prompts * args.group
    out = [
        f"model.name={model_dir}", f"model.dtype={args.dtype}", f"model.device={args.device}",
        f"lora.rank={LORA_RANK}", f"lora.alpha={LORA_ALPHA}",
        f"env.name={args.env}", "env.max_turns=1",
        "algorithm.loss=grpo", "algorithm.dynamic_sampling=false", "algorithm.tis=token",
        f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        f"rollout.temperature={args.temperature}", f"rollout.concurrency={n}",
        "sampler.kind=openai", f"sampler.base_url={server.base_url}",
        f"sampler.model={server.model}", f"sampler.max_concurrency={n}",
        f"sampler.max_lora_rank={LORA_RANK}",
        f"train.steps={args.steps}", f"train.seed={args.seed}", "train.lr=1e-4",
        f"train.checkpoint_every={args.steps + 1}",
        "eval.every=0", "eval.n_tasks=1", "eval.samples=1", "eval.kl_tasks=1",
        f"log.run_dir={run_dir}", "monitors.enabled=false",
    ]  # fmt: skip
    if args.device == "cpu":
        out.append("model.threads=1")  # the server shares the cores
    return out


def run_rl(overrides: list[str], deadline: Deadline) -> tuple[list[dict], str | None]:
    """Train as configured, stopping between steps when the next one might not fit; returns the
    step metrics and why it stopped early (None: every step ran)."""
    steps: list[dict] = []

    def on_step(step: int, metrics: dict) -> None:
        steps.append({"step": step, "done_at": time.monotonic(), **metrics})
        longest = max(s["time/step"] for s in steps)
        if deadline.left() - RESERVE_S < 1.5 * longest:
            raise OutOfTime(f"the time limit left no room for step {step + 1}")

    try:
        train(load_config(None, overrides), on_step=on_step)
    except OutOfTime as e:
        return steps, str(e)
    return steps, None


def rl_figures(steps: list[dict]) -> dict:
    """steps/s, the sampling phase's tokens/s and the mismatch over the measured steps."""
    measured = steps[1:] if len(steps) > 1 else steps  # the first step warms up
    tokens = sum(s["length/mean"] * s["episodes/count"] for s in measured)
    sample_s = sum(s["time/sample"] for s in measured)
    trained = [s for s in steps if "mismatch/k3" in s]
    out = {
        "steps_run": len(steps),
        "steps_measured": len(measured),
        "steps_trained": len(trained),
        "steps_per_s": len(measured) / sum(s["time/step"] for s in measured),
        "sample_tokens": int(tokens),
        "sample_seconds": round(sample_s, 3),
        "sample_tokens_per_s": tokens / sample_s,
        "mean_completion_tokens": statistics.fmean(s["length/mean"] for s in measured),
    }
    if trained:
        out["mismatch_k3_mean"] = statistics.fmean(s["mismatch/k3"] for s in trained)
        out["mismatch_k3_max"] = max(s["mismatch/k3"] for s in trained)
        out["mismatch_ratio_max"] = max(s["mismatch/ratio_max"] for s in trained)
        if all("tis/weight_mean" in s for s in trained):
            out["tis_weight_mean"] = statistics.fmean(s["tis/weight_mean"] for s in trained)
    keys = ("step", "time/step", "time/sample", "length/mean", "mismatch/k3", "mismatch/ratio_max")
    out["per_step"] = [{k: s[k] for k in keys if k in s} for s in steps]
    return out


# ---- the whole benchmark --------------------------------------------------------------------


def vllm_version(log_text: str) -> str | None:
    """vLLM's version, from the server's log (its first lines name it)."""
    m = re.search(r"vLLM API server version ([^\s,]+)", log_text) or re.search(
        r"\bversion (\d+\.\d+[^\s,]*)", log_text
    )
    return m.group(1) if m else None


def check_vllm(python: str) -> None:
    """Fail early and clearly when `python` cannot import vLLM."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BenchError(f"cannot run the vLLM python {python!r}: {e}") from e
    if done.returncode != 0:
        raise BenchError(
            f"{python} has no vllm module: pass --vllm-python (or set $BURNISH_VLLM_PYTHON) to "
            "the python of an environment with vLLM installed"
        )


def server_args(args) -> dict:
    """`start_vllm` keywords for the device: the CPU backend's fixed KV cache and eager mode,
    or a share of the GPU's memory (the trainer holds the rest) and CUDA graphs."""
    common = {"enable_lora": True, "max_lora_rank": LORA_RANK, "dtype": args.dtype}
    if args.device == "cpu":
        return {**common, "enforce_eager": True, "kv_cache_bytes": 1 << 30}
    extra = ["--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    return {**common, "enforce_eager": args.enforce_eager, "kv_cache_bytes": None,
            "extra_args": extra + list(args.vllm_arg)}  # fmt: skip


def benchmark(args, result: dict, deadline: Deadline, work: Path) -> None:
    """Fill `result` phase by phase (a phase cut short by the time limit leaves the earlier
    phases' figures in it)."""
    from vllm_server import start_vllm

    t0 = time.monotonic()
    if args.model:
        model_dir = Path(resolve_model_path(args.model))
    else:
        model_dir = build_model(args.size, work / f"qwen2-{args.size}", seed=args.seed)
    result["model"] = describe_model(model_dir)
    batches, stop_ids = step_prompts(model_dir, args.env, args.seed, args.steps, args.prompts)
    result["timings"]["model_s"] = round(time.monotonic() - t0, 1)
    body = {"n": args.group, "max_tokens": args.max_new_tokens, "temperature": args.temperature,
            "top_p": 1.0, "stop_token_ids": stop_ids, "skip_special_tokens": False}  # fmt: skip
    result["workload"]["prompt_tokens_mean"] = statistics.fmean(len(p) for b in batches for p in b)
    check_vllm(args.vllm_python)
    t0 = time.monotonic()
    with start_vllm(
        model_dir, python=args.vllm_python, served_model_name="bench",
        timeout_s=max(60.0, deadline.left() - RESERVE_S), log_path=work / "vllm.log",
        **server_args(args),
    ) as server:  # fmt: skip
        result["timings"]["vllm_start_s"] = round(time.monotonic() - t0, 1)
        result["vllm_version"] = vllm_version(server.log_tail(200_000))
        t0 = time.monotonic()
        result["raw_vllm"] = measure_raw(server, model_dir, batches, body, work)
        result["timings"]["raw_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        steps, stopped = run_rl(rl_overrides(args, model_dir, server, work / "run"), deadline)
        t1 = time.monotonic()
        result["timings"]["rl_s"] = round(t1 - t0, 1)
        if steps:  # before the first step (setup, first evaluation) and after the last
            first = steps[0]["done_at"] - steps[0]["time/step"]
            result["timings"]["rl_setup_s"] = round(first - t0, 1)
            result["timings"]["rl_finish_s"] = round(t1 - steps[-1]["done_at"], 1)
        if stopped:
            result["stopped"] = stopped
        if not steps:
            raise BenchError("the RL run logged no step")
        result["rl"] = rl_figures(steps)
    rl, raw = result["rl"], result["raw_vllm"]
    result["ratio"] = {
        "sampling_over_raw_lora": rl["sample_tokens_per_s"] / raw["lora"]["tokens_per_s"],
        "sampling_over_raw_base": rl["sample_tokens_per_s"] / raw["base"]["tokens_per_s"],
        "goal": GOAL,
    }
    result["ratio"]["meets_goal"] = result["ratio"]["sampling_over_raw_lora"] >= GOAL


# ---- the command ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--model", default=None, help="a local model directory (or burnish-tiny)")
    ap.add_argument("--size", choices=sorted(SIZES), default=None, help="the random model's shape")
    ap.add_argument("--env", default="reverse", help="partial credit: a random model's groups "
                    "are informative, so every step trains")  # fmt: skip
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--prompts", type=int, default=None, help="prompts per step")
    ap.add_argument("--group", type=int, default=None, help="completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=540.0, help="seconds, all included")
    ap.add_argument("--vllm-python", default=os.environ.get("BURNISH_VLLM_PYTHON", sys.executable))
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.45,
                    help="vLLM's share of the GPU (the trainer uses the rest)")  # fmt: skip
    ap.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs in vLLM")
    ap.add_argument("--vllm-arg", action="append", default=[], help="more server arguments")
    ap.add_argument("--out", default=None, help="the JSON (default $OUT/ or a temporary dir)")
    args = ap.parse_args(argv)
    kind = "cpu" if args.device == "cpu" else "cuda"
    size, steps, prompts, group, max_new = DEFAULTS[kind]
    args.size = args.size or size
    args.steps, args.prompts = args.steps or steps, args.prompts or prompts
    args.group, args.max_new_tokens = args.group or group, args.max_new_tokens or max_new
    args.dtype = args.dtype or ("float32" if kind == "cpu" else "bfloat16")
    return args


def out_path(args) -> Path:
    if args.out:
        return Path(args.out)
    root = os.environ.get("OUT") or tempfile.mkdtemp(prefix="burnish-gpu-bench-")
    return Path(root) / "gpu_benchmark.json"


def device_info(args) -> dict:
    """The device the trainer uses; raises `BenchError` (exit 2) when CUDA is asked for and
    absent."""
    if args.device == "cpu":
        return {"device": "cpu", "name": "cpu", "cores": os.cpu_count()}
    if not torch.cuda.is_available():
        raise BenchError(
            f"--device {args.device}: torch sees no CUDA device (torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda}); run with --device cpu --dtype float32 for the "
            "CPU smoke run",
            code=2,
        )
    index = torch.device(args.device).index or 0
    return {"device": args.device, "name": torch.cuda.get_device_name(index)}


def table(result: dict) -> str:
    """The figures as a compact Markdown table (what was not measured is left out)."""
    d = result["device"]
    rows = [("device", f"{d.get('name') or 'not found'} ({d['device']})")]
    if "model" in result:
        m = result["model"]
        rows.append(("model", f"{m['architecture']} {m['parameters'] / 1e6:.1f}M params, "
                     f"{m['layers']}x{m['hidden']}, {m['heads']}/{m['kv_heads']} heads of "
                     f"{m['head_dim']}, vocab {m['vocab']}, {result['dtype']}"))  # fmt: skip
    w = result["workload"]
    rows.append(("workload", f"{w['env']}: {w['steps']} steps x {w['prompts_per_step']} prompts "
                 f"x {w['group_size']} samples x {w['max_new_tokens']} tokens"))  # fmt: skip
    for kind in ("lora", "base"):
        raw = result.get("raw_vllm", {}).get(kind)
        if raw:
            rows.append((f"raw vLLM ({kind})", f"{raw['tokens_per_s']:.0f} tok/s "
                         f"({raw['tokens']} tokens in {raw['seconds']:.2f} s)"))  # fmt: skip
    rl = result.get("rl")
    if rl:
        rows.append(("RL steps/s", f"{rl['steps_per_s']:.3f} ({rl['steps_measured']} of "
                     f"{rl['steps_run']} steps measured)"))  # fmt: skip
        rows.append(("RL sampling", f"{rl['sample_tokens_per_s']:.0f} tok/s "
                     f"({rl['sample_tokens']} tokens in {rl['sample_seconds']:.2f} s)"))  # fmt: skip
    if "ratio" in result:
        r = result["ratio"]
        rows.append(("sampling / raw", f"{r['sampling_over_raw_lora']:.2f} (LoRA), "
                     f"{r['sampling_over_raw_base']:.2f} (base); goal >= {r['goal']:.2f}"))  # fmt: skip
    if rl and "mismatch_k3_max" in rl:
        rows.append(("mismatch", f"k3 mean {rl['mismatch_k3_mean']:.2e}, max "
                     f"{rl['mismatch_k3_max']:.2e}; ratio max {rl['mismatch_ratio_max']:.4f}"))  # fmt: skip
    rows += [(f"time: {k}", f"{v} s") for k, v in result["timings"].items()]
    lines = ["| figure | value |", "| --- | --- |"]
    return "\n".join(lines + [f"| {k} | {v} |" for k, v in rows])


def _time_up(signum, frame):
    raise OutOfTime("the time limit was reached")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    deadline = Deadline(started + args.time_limit)
    result: dict = {"benchmark": "gpu", "complete": False, "error": None, "stopped": None,
                    "dtype": args.dtype, "device": {"device": args.device}, "timings": {},
                    "workload": {"env": args.env, "steps": args.steps,
                                 "prompts_per_step": args.prompts, "group_size": args.group,
                                 "max_new_tokens": args.max_new_tokens,
                                 "temperature": args.temperature}}  # fmt: skip
    code = 0
    signal.signal(signal.SIGALRM, _time_up)
    signal.alarm(max(1, int(args.time_limit - RESERVE_S / 2)))  # what the steps' check missed
    try:
        with tempfile.TemporaryDirectory(prefix="burnish-gpu-bench-") as work:
            result["device"] = device_info(args)
            benchmark(args, result, deadline, Path(work))
    except OutOfTime as e:
        result["stopped"] = str(e)
    except BenchError as e:
        result["error"], code = str(e), e.code
    except Exception as e:  # reported with its type; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        result["error"], code = f"{type(e).__name__}: {e}", 1
    finally:
        signal.alarm(0)
    result["timings"]["total_s"] = round(time.monotonic() - started, 1)
    measured = "ratio" in result
    result["complete"] = measured and not result["stopped"] and not result["error"]
    if code == 0 and not measured:
        result["error"], code = f"nothing measured: {result['stopped']}", 1
    path = out_path(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))
    print(table(result))
    if result["stopped"]:
        print(f"stopped early: {result['stopped']}")
    if result["error"]:
        print(f"FAILED: {result['error']}", file=sys.stderr)
    print(f"results: {path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
