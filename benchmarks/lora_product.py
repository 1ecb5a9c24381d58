"""A training forward + backward with LoRA's scale and sum inside one product, or outside it.

`burnish.models.lean_lora.LeanLinear` computes a LoRA projection as
``addmm(base(x), A(x), B.T, alpha=scaling)``: the scale and the sum happen inside the second
LoRA product. The baseline is the same fast path with PEFT's three operations after it
(``base(x) + (A(x) @ B.T) * scaling``: a product, a scale and a sum, each a pass over the
layer's output). Both run the training forward (`burnish.models.shared_prefix_logprobs`, the
layout `vs_trl.py`'s step picks) and its backward on the same batch, in the same process,
alternately; the model, LoRA (rank 16, alpha 32, nonzero B), kernel routing and heap setting
are those of a burnish run at the benchmark size (`bench_models`), the batch is random tokens
in `vs_trl.py`'s group shape. Prints the median time of each and the median (range) of the
per-pair ratio baseline / one product (above 1: the one product is faster), and the largest
difference of log-probs and LoRA gradients between the two.

    python benchmarks/lora_product.py --size 34m
    python benchmarks/lora_product.py --size tiny --completion-tokens 4 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models  # noqa: E402
import vs_trl  # noqa: E402

from burnish.models import lean_lora  # noqa: E402
from burnish.models.load import load_model  # noqa: E402
from burnish.models.lora import attach_lora  # noqa: E402
from burnish.models.onednn_linear import route_base_matmuls  # noqa: E402
from burnish.models.shared_prefix import shared_prefix_logprobs  # noqa: E402
from burnish.train.heap import freed_memory_kept  # noqa: E402

PROMPT_TOKENS = {"tiny": 24, "34m": 9, "100m": 9}
COMPLETION_TOKENS = {"tiny": 4, "34m": 16, "100m": 16}


def sum_outside(self, x, *args, **kwargs):
    """The baseline: `LeanLinear`'s plain case with PEFT's product, scale and sum."""
    weights = None if args or kwargs else self._plain_weights(x)
    if weights is None or x.dtype != weights[1].weight.dtype:
        return ONE_PRODUCT(self, x, *args, **kwargs)
    base, lora_a, lora_b, scaling = weights
    result = (
        F.linear(x, base.weight, base.bias) if type(base) is torch.nn.Linear else base.forward(x)
    )
    return result + F.linear(F.linear(x, lora_a.weight, lora_a.bias), lora_b.weight) * scaling


ONE_PRODUCT = lean_lora.LeanLinear.forward


def build(size: str, tmp: Path):
    model = load_model(bench_models.build(size, tmp))[0]
    model = attach_lora(model, rank=16, alpha=32)
    g = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # as after some updates: B = 0 would hide the LoRA gradients
            p.data = torch.randn(p.shape, generator=g) * 0.01
    route_base_matmuls(model, "auto")
    return model


def batch(model, size: str, prompt_tokens: int, completion_tokens: int):
    shape = vs_trl.SHAPES[size]
    prompts, group = shape["prompts"], shape["group"]
    vocab = int(model.config.vocab_size)
    g = torch.Generator().manual_seed(1)
    prompt_U_P = torch.randint(3, vocab, (prompts, prompt_tokens), generator=g)
    suffix_B_S = torch.randint(3, vocab, (prompts * group, completion_tokens), generator=g)
    tokens_B_T = torch.cat([prompt_U_P.repeat_interleave(group, 0), suffix_B_S], dim=1)
    rows = prompts * group
    lengths_B = torch.full((rows,), prompt_tokens + completion_tokens)
    return tokens_B_T, lengths_B, torch.full((rows,), prompt_tokens)


def step(model, tokens_B_T, lengths_B, share_B):
    """One forward + backward; (seconds, log-probs, LoRA gradients)."""
    model.zero_grad(set_to_none=True)
    t = time.perf_counter()
    logp_B_T, _ = shared_prefix_logprobs(model, tokens_B_T, lengths_B, share_B)
    logp_B_T.sum().backward()
    seconds = time.perf_counter() - t
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return seconds, logp_B_T.detach(), grads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=bench_models.SIZES, default="34m")
    p.add_argument("--prompt-tokens", type=int, default=None)
    p.add_argument("--completion-tokens", type=int, default=None)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    prompt_tokens = a.prompt_tokens or PROMPT_TOKENS[a.size]
    completion_tokens = a.completion_tokens or COMPLETION_TOKENS[a.size]
    with tempfile.TemporaryDirectory() as tmp, freed_memory_kept():
        model = build(a.size, Path(tmp))
        rows = batch(model, a.size, prompt_tokens, completion_tokens)
        variants = {"one product": ONE_PRODUCT, "product, scale, sum": sum_outside}
        times: dict[str, list[float]] = {name: [] for name in variants}
        results = {}
        for i in range(a.repeats + 1):  # the first round warms up
            for name, forward in variants.items():
                lean_lora.LeanLinear.forward = forward
                seconds, logp, grads = step(model, *rows)
                results[name] = (logp, grads)
                if i:
                    times[name].append(seconds)
        lean_lora.LeanLinear.forward = ONE_PRODUCT
    (logp_a, grads_a), (logp_b, grads_b) = results.values()
    grad_diff = max(float((x - y).abs().max()) for x, y in zip(grads_a, grads_b, strict=True))
    ratios = [b / a for a, b in zip(*times.values(), strict=True)]
    print(
        f"size {a.size}: {rows[0].shape[0]} rows, {prompt_tokens} prompt + {completion_tokens} "
        f"completion tokens, {a.threads} thread(s), {a.repeats} interleaved pairs"
    )
    for name, ts in times.items():
        print(f"  {name:20s} {statistics.median(ts):.4f} s (median)")
    print(
        f"  max |d logp| {float((logp_a - logp_b).abs().max()):.2e}, max |d grad| {grad_diff:.2e}"
    )
    print(
        f"ratio (product, scale, sum) / (one product): {statistics.median(ratios):.3f} "
        f"({min(ratios):.3f}-{max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
