"""Sampling throughput: `LocalSampler` against plain `model.generate`, same work.

Both sample with do_sample at temperature 1 (no top-p/top-k), the same left-padded prompts, the
same batch (all prompts at once) and the same number of new tokens, on one randomly initialised
tiny Llama (character tokenizer). Tokens/s counts sampled completion tokens; the median of
``--repeats`` timed runs (interleaved, after one warm-up run each) is reported.

    python benchmarks/sampling.py [--prompts 64] [--new-tokens 32] [--hidden 128] [--layers 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import torch

from burnish.models import set_threads
from burnish.models.tiny import tiny_model
from burnish.rollout import LocalSampler, SamplingParams


def _prompts(tok, n: int) -> list[list[int]]:
    return [
        tok.apply_chat_template(
            [{"role": "user", "content": f"What is {i} + {i * 7 % 100}?"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(n)
    ]


def bench_local(model, tok, texts, new_tokens: int) -> tuple[float, int]:
    sampler = LocalSampler(model, tok)
    prompts = [tok.encode(t) for t in texts]
    params = SamplingParams(max_new_tokens=new_tokens, temperature=1.0)

    async def one_step() -> list:
        # one sample() call per episode, as the episode runner does
        results = await asyncio.gather(*[sampler.sample([p], params) for p in prompts])
        return [c for r in results for c in r]

    t0 = time.perf_counter()
    completions = asyncio.run(one_step())
    dt = time.perf_counter() - t0
    sampler.close()
    return dt, sum(len(c.token_ids) for c in completions)


def bench_generate(model, tok, texts, new_tokens: int) -> tuple[float, int]:
    tok.padding_side = "left"
    t0 = time.perf_counter()
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.inference_mode():
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=new_tokens,
            pad_token_id=tok.pad_token_id,
        )
    dt = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1] :]
    # tokens up to and including the first EOS of each row
    counts = []
    for row in new.tolist():
        counts.append(row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row))
    return dt, sum(counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    set_threads(args.threads)
    model, tok = tiny_model(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads)
    n_params = sum(p.numel() for p in model.parameters())
    texts = _prompts(tok, args.prompts)
    benches = {"LocalSampler": bench_local, "model.generate": bench_generate}
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in benches}
    for fn in benches.values():
        fn(model, tok, texts, args.new_tokens)  # warm-up
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits both
        for name, fn in benches.items():
            runs[name].append(fn(model, tok, texts, args.new_tokens))
    rows = {
        name: (statistics.median(n / dt for dt, n in r), statistics.median(dt for dt, _ in r))
        for name, r in runs.items()
    }
    print(
        f"tiny llama {n_params / 1e6:.2f}M params (hidden {args.hidden}, {args.layers} layers), "
        f"{args.prompts} prompts x {args.new_tokens} new tokens, temperature 1, "
        f"{args.threads} thread(s), median of {args.repeats}"
    )
    for name, (rate, dt) in rows.items():
        print(f"  {name:15s} {rate:9.0f} tokens/s  ({dt * 1000:.0f} ms per batch)")
    ratio = rows["LocalSampler"][0] / rows["model.generate"][0]
    print(f"  ratio LocalSampler / model.generate: {ratio:.2f}x")


if __name__ == "__main__":
    main()
