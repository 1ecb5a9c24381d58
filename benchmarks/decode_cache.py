"""The decode loop's KV cache: room reserved once and written in place, against transformers' cache.

transformers' `DynamicLayer` concatenates every new token onto its keys and values, copying the
whole cache at each decode step; `burnish.models.kv_cache.ReservedLayer` writes the token into
room reserved at the prefill. This times `generate_rows` (the `LocalSampler` engine) both ways on
the LoRA policy of a benchmark size (`bench_models`), the same rows (one prompt per group, G
samples each, every row running to the token budget), interleaved, and prints the median time per
call, the median ratio and its range, and whether both gave the same tokens and logprobs.

    python benchmarks/decode_cache.py --size tiny --new-tokens 16
    python benchmarks/decode_cache.py --size 34m --new-tokens 256 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models  # noqa: E402
import torch  # noqa: E402


def _rows(tok, prompts: int, group: int, new_tokens: int):
    from burnish.models.generate import GenerationRow

    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": f"What is {i * 37 % 100} + {i * 11 % 100}?"}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(prompts)
    ]
    # no stop tokens: every row decodes the whole budget, so the cache reaches its full length
    return [
        GenerationRow(prompt=tuple(tok.encode(t)), max_new_tokens=new_tokens, seed=i * group + j)
        for i, t in enumerate(texts)
        for j in range(group)
    ]


def main() -> None:
    from burnish.models import attach_lora, load_model
    from burnish.models import generate as gen

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=bench_models.SIZES, default="tiny")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = load_model(bench_models.build(a.size, Path(tmp)))
    policy = attach_lora(model).eval()
    base = policy.get_base_model()
    rows = _rows(tok, a.prompts, a.group, a.new_tokens)
    reserved = gen.reserved_cache
    kinds = {"reserved": reserved, "transformers": lambda model, extra: None}
    times: dict[str, list[float]] = {k: [] for k in kinds}
    out = {}
    for i in range(a.repeats + 1):  # the first round warms up
        for kind, make in kinds.items():
            gen.reserved_cache = make
            t = time.perf_counter()
            out[kind] = gen.generate_rows(base, tok, rows, pad_id=tok.pad_token_id)
            if i:
                times[kind].append(time.perf_counter() - t)
    gen.reserved_cache = reserved
    same = all(
        (x.tokens, x.logprobs) == (y.tokens, y.logprobs)
        for x, y in zip(out["reserved"], out["transformers"], strict=True)
    )
    ratios = [t / r for r, t in zip(times["reserved"], times["transformers"], strict=True)]
    print(
        f"size {a.size}: {len(rows)} rows ({a.prompts} prompts x {a.group}), {a.new_tokens} new "
        f"tokens, {a.threads} thread(s), {a.repeats} interleaved repeats"
    )
    for kind, ts in times.items():
        print(f"  {kind:12s} {statistics.median(ts) * 1e3:8.1f} ms per call (median)")
    print(f"  same tokens and logprobs: {same}")
    print(
        f"time ratio transformers/reserved: {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
