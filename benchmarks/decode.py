"""The decode loop with one of its speed-ups on and off (KV cache, LM head, merged LoRA, ...).

- ``--change kv-cache``: transformers' `DynamicLayer` concatenates every new token onto its keys
  and values, copying the whole cache at each decode step;
  `burnish.models.kv_cache.ReservedLayer` writes the token into room reserved at the prefill.
- ``--change wide-head``: `burnish.models.wide_head.WideHead` computes a large vocabulary's LM
  head weight-first for few rows, against ``F.linear`` (the plain `nn.Linear`).
- ``--change merged-lora``: `burnish.models.lean_lora.merged_lora` runs each LoRA layer as one
  product with ``W + B @ A * scaling`` during the decode, against the unmerged layers (three
  products, a scale and a sum). The adapter's B starts random (std 0.02, as after training)
  instead of PEFT's zeros, so the two differ by rounding and the logprob gap is a real one.
- ``--change onednn-weight``: the LoRA base layers routed as ``lora.base_matmul = "auto"``
  routes them (`burnish.models.onednn_linear.route_base_matmuls`), with and without
  `ONEDNN_MIN_WEIGHT` (off: only products of `ONEDNN_MIN_MACS` go to oneDNN). The other changes
  run every product on BLAS.
- ``--change fast-decode``: `burnish.models.fast_decode.FastDecoder` runs each decode step from
  the (merged) weights, against the model's own forward on the same merged layers (LoRA B
  random as for ``merged-lora``).
- ``--change fast-prefill``: `FastDecoder.prefill` runs the prompts' prefill from the (merged)
  weights, against the model's own forward for the prefill only (the decode steps are
  `FastDecoder`'s both ways).

This times `generate_rows` (the `LocalSampler` engine) both ways on the LoRA policy of a
benchmark size (`bench_models`), the same rows (one prompt per group, G samples each, every row
running to the token budget), interleaved, and prints the median time per call, the median
ratio and its range, and whether both gave the same tokens and logprobs.

    python benchmarks/decode.py --change kv-cache --size tiny --new-tokens 16
    python benchmarks/decode.py --change kv-cache --size 34m --new-tokens 256 --repeats 3
    python benchmarks/decode.py --change wide-head --size 100m --new-tokens 16 --repeats 3
    python benchmarks/decode.py --change merged-lora --size tiny --prompts 8 --new-tokens 12
    python benchmarks/decode.py --change fast-decode --size tiny --prompts 8 --new-tokens 12
    python benchmarks/decode.py --change fast-prefill --size tiny --prompts 8 --new-tokens 4
    python benchmarks/decode.py --change onednn-weight --size 34m --new-tokens 16 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
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


def _without_fast_prefill(prefill):
    """``prefill`` (`generate._prefill`) through the model's own forward, then the `FastDecoder`
    for the decode steps, as before `FastDecoder.prefill`."""
    from burnish.models import generate as gen

    def model_prefill(model, batch, rows, adapters, keep_kw):
        fast = gen.fast_decoder
        gen.fast_decoder = lambda model, cache: None
        try:
            cache, logits_B_V, _ = prefill(model, batch, rows, adapters, keep_kw)
        finally:
            gen.fast_decoder = fast
        return cache, logits_B_V, None if adapters is not None else fast(model, cache)

    return model_prefill


def _switch(change: str, model):
    """Two functions that turn ``change`` on and off in the decode loop."""
    from burnish.models import generate as gen
    from burnish.models.wide_head import WideHead

    if change == "kv-cache":
        reserved = gen.reserved_cache

        def on():
            gen.reserved_cache = reserved

        def off():
            gen.reserved_cache = lambda model, extra: None

        return on, off
    if change == "merged-lora":
        merged = gen.merged_lora

        def merge():
            gen.merged_lora = merged

        def unmerged(model, tokens):
            return contextlib.nullcontext(0)

        return merge, lambda: setattr(gen, "merged_lora", unmerged)
    if change == "fast-decode":
        fast = gen.fast_decoder
        return (
            lambda: setattr(gen, "fast_decoder", fast),
            lambda: setattr(gen, "fast_decoder", lambda model, cache: None),
        )
    if change == "fast-prefill":
        prefill = gen._prefill
        slow = _without_fast_prefill(prefill)
        return (
            lambda: setattr(gen, "_prefill", prefill),
            lambda: setattr(gen, "_prefill", slow),
        )
    if change == "onednn-weight":
        from burnish.models import onednn_linear as od

        shipped = od.ONEDNN_MIN_WEIGHT
        return (
            lambda: setattr(od, "ONEDNN_MIN_WEIGHT", shipped),
            lambda: setattr(od, "ONEDNN_MIN_WEIGHT", 1 << 62),
        )
    head = model.get_output_embeddings()
    if type(head) is not WideHead:
        raise SystemExit(f"this size's LM head ({head.out_features} tokens) is not a WideHead")

    def widen():
        head.__class__ = WideHead

    def plain():
        head.__class__ = torch.nn.Linear

    return widen, plain


def main() -> None:
    from burnish.models import attach_lora, load_model
    from burnish.models import generate as gen

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--change",
        choices=(
            "kv-cache",
            "wide-head",
            "merged-lora",
            "fast-decode",
            "fast-prefill",
            "onednn-weight",
        ),
        required=True,
    )
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
    if a.change == "onednn-weight":
        from burnish.models.onednn_linear import route_base_matmuls

        if not route_base_matmuls(policy, "auto"):
            raise SystemExit("lora.base_matmul='auto' routes nothing to oneDNN on this CPU")
    if a.change in ("merged-lora", "fast-decode", "fast-prefill", "onednn-weight"):
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            for name, param in policy.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=g) * 0.02)
    base = policy.get_base_model()
    rows = _rows(tok, a.prompts, a.group, a.new_tokens)
    on, off = _switch(a.change, base)
    times: dict[str, list[float]] = {"on": [], "off": []}
    out = {}
    for i in range(a.repeats + 1):  # the first round warms up
        for kind, switch in (("on", on), ("off", off)):
            switch()
            t = time.perf_counter()
            out[kind] = gen.generate_rows(base, tok, rows, pad_id=tok.pad_token_id)
            if i:
                times[kind].append(time.perf_counter() - t)
    on()
    same = all(
        (x.tokens, x.logprobs) == (y.tokens, y.logprobs)
        for x, y in zip(out["on"], out["off"], strict=True)
    )
    gap = max(
        (abs(u - v) for x, y in zip(out["on"], out["off"]) for u, v in zip(x.logprobs, y.logprobs)),
        default=0.0,
    )
    ratios = [t_off / t_on for t_on, t_off in zip(times["on"], times["off"], strict=True)]
    print(
        f"{a.change}, size {a.size}: {len(rows)} rows ({a.prompts} prompts x {a.group}), "
        f"{a.new_tokens} new tokens, {a.threads} thread(s), {a.repeats} interleaved repeats"
    )
    for kind, ts in times.items():
        print(f"  {a.change} {kind:3s} {statistics.median(ts) * 1e3:9.1f} ms per call (median)")
    print(f"  same tokens and logprobs: {same} (largest logprob difference {gap:.2e})")
    print(
        f"time ratio off/on: {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
