"""Parity of a real vLLM server with burnish's in-process sampler, on the same weights.

    python benchmarks/vllm_parity.py --vllm-python /path/to/vllm-venv/bin/python

Starts vLLM (``--enforce-eager --dtype float32 --enable-lora``) on 127.0.0.1 with the model
(default the shipped `burnish-tiny`), samples the first prompts of the test split of every
built-in environment through `OpenAISampler` and through `LocalSampler`, and compares:

- greedy (temperature 0): the tokens must be identical and their logprobs (the model's, at
  temperature 1, on both sides) equal within the tolerance;
- temperature 1: each side's samples are scored by the other (vLLM's ``prompt_logprobs`` for
  burnish's samples, `sequence_logprobs` for vLLM's), and the reported logprobs compared;

first on the base model, then with a LoRA adapter (rank 16, its B matrices set to seeded noise
so that it changes the outputs) saved by `save_adapter` and loaded with
``POST /v1/load_lora_adapter`` (`OpenAISampler.sync`). The server is stopped at the end.

Prints one row per case and exits 1 when a logprob differs by more than ``--tolerance``
(default 1e-4) or a greedy token differs. `parity()` returns the figures for reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the vLLM server helper lives with the tests

from burnish.envs.registry import load_env  # noqa: E402
from burnish.models.load import load_model, resolve_model_path  # noqa: E402
from burnish.models.logprobs import sequence_logprobs  # noqa: E402
from burnish.models.lora import attach_lora  # noqa: E402
from burnish.models.threads import set_threads  # noqa: E402
from burnish.rollout import LocalSampler, SamplingParams  # noqa: E402
from burnish.rollout.openai_sampler import OpenAISampler  # noqa: E402
from vllm_server import start_vllm  # noqa: E402

ENVS = ("arithmetic", "reverse", "calculator", "keywords", "guess-number")


async def env_prompts(tokenizer, per_env: int, max_len: int) -> list[list[int]]:
    """Token ids of the first `per_env` test prompts of each built-in environment."""
    prompts = []
    for name in ENVS:
        env = load_env(name)
        tasks = env.tasks("test", 0)
        for _ in range(per_env):
            messages = await env.reset(next(tasks))
            text = tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                tokenize=False,
            )
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) <= max_len:
                prompts.append(ids)
    return prompts


def perturb_lora(policy, seed: int, scale: float) -> None:
    """Set every LoRA B matrix to seeded noise (PEFT starts B at 0: the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


def scored(model, prompt: list[int], tokens: tuple[int, ...]) -> list[float]:
    """burnish's logprobs of `tokens` after `prompt` (teacher-forced, temperature 1)."""
    ids = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logp, _ = sequence_logprobs(model, ids)
    return logp[0, len(prompt) :].tolist()


def _max_abs(a, b) -> float:
    return max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)


async def compare(model, local, remote, scorer, prompts, max_new_tokens, samples, seed):
    """The figures of one model (base or adapted): greedy and temperature 1, both ways."""
    out = {}
    greedy = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    mine = await local.sample(prompts, greedy)
    theirs = await remote.sample(prompts, greedy)
    same = sum(a.token_ids == b.token_ids for a, b in zip(mine, theirs, strict=True))
    delta, tokens = 0.0, 0
    for a, b in zip(mine, theirs, strict=True):
        k = next(
            (i for i, (x, y) in enumerate(zip(a.token_ids, b.token_ids)) if x != y),
            min(len(a.token_ids), len(b.token_ids)),
        )
        delta = max(delta, _max_abs(a.logprobs[:k], b.logprobs[:k]))
        tokens += k
    out["_greedy_tokens"] = [c.token_ids for c in theirs]
    out["greedy"] = {
        "completions": len(mine),
        "identical": same,
        "tokens": tokens,
        "max_abs_dlogprob": delta,
    }

    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, n=samples, seed=seed)
    mine = await local.sample(prompts, params)
    rescored = await scorer.prompt_logprobs(
        [list(prompts[c.prompt_index]) + list(c.token_ids) for c in mine]
    )
    delta = max(
        _max_abs(c.logprobs, r[len(prompts[c.prompt_index]) :])
        for c, r in zip(mine, rescored, strict=True)
    )
    out["t1_burnish_samples"] = {
        "completions": len(mine),
        "tokens": sum(len(c.token_ids) for c in mine),
        "max_abs_dlogprob": delta,
    }
    theirs = await remote.sample(prompts, params)
    delta = max(
        _max_abs(c.logprobs, scored(model, prompts[c.prompt_index], c.token_ids)) for c in theirs
    )
    out["t1_vllm_samples"] = {
        "completions": len(theirs),
        "tokens": sum(len(c.token_ids) for c in theirs),
        "max_abs_dlogprob": delta,
    }
    return out


async def _parity(model_dir, server, per_env, max_new_tokens, samples, seed, lora_scale):
    model, tokenizer = load_model(model_dir)
    max_len = model.config.max_position_embeddings - max_new_tokens
    prompts = await env_prompts(tokenizer, per_env, max_len)
    adapters = Path(tempfile.mkdtemp(prefix="burnish-parity-adapters-"))
    remote = OpenAISampler(server.base_url, server.model, adapter_dir=adapters)
    # vLLM 0.32's CPU LoRA logits path fails on a batch of several prompt_logprobs requests
    # (an einsum shape error that kills the engine) when started with --enable-lora: the
    # scoring requests go one at a time.
    scorer = OpenAISampler(server.base_url, server.model, adapter_dir=adapters, max_concurrency=1)
    local = LocalSampler(model, tokenizer, threads=1, seed=seed)
    figures = {"prompts": len(prompts)}
    figures["base"] = await compare(
        model, local, remote, scorer, prompts, max_new_tokens, samples, seed
    )
    policy = attach_lora(model, rank=16, alpha=32).eval()
    perturb_lora(policy, seed, lora_scale)
    await remote.sync(policy)  # save_adapter + POST /v1/load_lora_adapter
    scorer.current_adapter = remote.current_adapter
    local = LocalSampler(policy, tokenizer, threads=1, seed=seed)
    figures["lora"] = await compare(
        policy, local, remote, scorer, prompts, max_new_tokens, samples, seed
    )
    base, adapted = figures["base"].pop("_greedy_tokens"), figures["lora"].pop("_greedy_tokens")
    figures["lora"]["adapter"] = remote.current_adapter
    figures["lora"]["greedy_changed_by_adapter"] = sum(
        a != b for a, b in zip(base, adapted, strict=True)
    )
    return figures


def parity(
    vllm_python: str,
    model_dir: str = "burnish-tiny",
    *,
    per_env: int = 4,
    max_new_tokens: int = 48,
    samples: int = 4,
    seed: int = 0,
    lora_scale: float = 0.05,
    log_path: str | None = None,
) -> dict:
    """Start vLLM on `model_dir`, measure the parity figures (see the module docstring), stop it.

    Returns:
        ``{"prompts": N, "base": {...}, "lora": {...}, "startup_s": s}``; each case maps
        ``greedy`` / ``t1_burnish_samples`` / ``t1_vllm_samples`` to its counts and
        ``max_abs_dlogprob``.
    """
    set_threads(1)
    path = resolve_model_path(model_dir)
    start = time.perf_counter()
    with start_vllm(
        path, python=vllm_python, enable_lora=True, max_lora_rank=16, log_path=log_path
    ) as server:
        startup_s = time.perf_counter() - start
        figures = asyncio.run(
            _parity(path, server, per_env, max_new_tokens, samples, seed, lora_scale)
        )
    figures["startup_s"] = round(startup_s, 1)
    return figures


def failures(figures: dict, tolerance: float) -> list[str]:
    """What exceeds the tolerance, or a greedy completion that differs (empty: parity)."""
    bad = []
    for case in ("base", "lora"):
        for kind, row in figures[case].items():
            if not isinstance(row, dict):
                continue
            if row["max_abs_dlogprob"] > tolerance:
                bad.append(f"{case} {kind}: max |dlogprob| {row['max_abs_dlogprob']:.2e}")
            if kind == "greedy" and row["identical"] != row["completions"]:
                bad.append(
                    f"{case} greedy: {row['completions'] - row['identical']} of "
                    f"{row['completions']} completions differ"
                )
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vllm-python", required=True, help="python of the vLLM environment")
    ap.add_argument("--model", default="burnish-tiny", help="model directory or burnish-tiny")
    ap.add_argument("--per-env", type=int, default=4, help="test prompts of each environment")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--samples", type=int, default=4, help="temperature-1 samples per prompt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--log", default=None, help="where the server's output goes")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    figures = parity(
        args.vllm_python,
        args.model,
        per_env=args.per_env,
        max_new_tokens=args.max_new_tokens,
        samples=args.samples,
        seed=args.seed,
        log_path=args.log,
    )
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{figures['prompts']} prompts; vLLM up in {figures['startup_s']} s; the adapter "
            f"changed {figures['lora']['greedy_changed_by_adapter']} of {figures['prompts']} "
            "greedy completions"
        )
        print("| model | check | completions | tokens | greedy identical | max abs dlogprob |")
        print("| --- | --- | --- | --- | --- | --- |")
        for case in ("base", "lora"):
            for kind, row in figures[case].items():
                if isinstance(row, dict):
                    same = f"{row['identical']}/{row['completions']}" if "identical" in row else ""
                    print(
                        f"| {case} | {kind} | {row['completions']} | {row['tokens']} | {same} | "
                        f"{row['max_abs_dlogprob']:.2e} |"
                    )
    bad = failures(figures, args.tolerance)
    for line in bad:
        print("MISMATCH:", line, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
