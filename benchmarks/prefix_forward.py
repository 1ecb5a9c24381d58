"""Training forward + backward with and without shared-prefix computation, on a demo-sized batch.

Builds the batch of one `burnish demo` step: burnish-tiny with a rank-16 LoRA adapter (non-zero,
as after a few updates), 8 arithmetic prompts rendered with the chat template × 8 completions
each. Completions are random answers (an optional minus sign, 1-3 digits, then EOS), so rows
of a group share exactly their prompt. Both paths run in the same process on ``--threads``
threads (default 1), each alternately, and the median of ``--repeats`` timed runs is
reported, with the largest difference of log-probs, entropies and LoRA gradients between the
two paths; for scale, the same differences between the plain path on the whole batch and the
plain path run one row at a time (float rounding that already varies with the micro-batch
shape).

``--layouts`` also times the two shared-prefix layouts forced (``padded``, ``packed``), with
`layout_flops`'s estimate of each: the measurement behind `SECOND_PASS_FLOPS` (the padded
layout's time beyond its arithmetic). ``--threads`` sets torch's threads (default 1).

Usage:
    python benchmarks/prefix_forward.py [--prompts 8] [--group 8] [--repeats 15] [--threads 1]
        [--layouts] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time

import torch


def build_batch(tok, prompts: int, group: int, seed: int):
    """Token rows, loss mask and lengths of `prompts` × `group` arithmetic rollouts."""
    from burnish.envs.registry import load_env
    from burnish.rollout.episode import ChatCodec

    env = load_env("arithmetic")
    codec = ChatCodec(tok)
    rng = random.Random(seed)
    rows, masks = [], []
    for task in itertools.islice(env.tasks("train", seed), prompts):
        prompt = codec.encode(codec.render(task.prompt, add_generation_prompt=True))
        for _ in range(group):
            answer = ("-" if rng.random() < 0.2 else "") + str(
                rng.randint(0, 10 ** rng.randint(1, 3))
            )
            out = codec.encode(answer) + [tok.eos_token_id]
            rows.append(prompt + out)
            masks.append([0] * len(prompt) + [1] * len(out))
    B, T = len(rows), max(len(r) for r in rows)
    tokens = torch.full((B, T), tok.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros(B, T)
    for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
        tokens[i, : len(r)] = torch.tensor(r)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return tokens, mask, torch.tensor([len(r) for r in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--layouts", action="store_true", help="also time padded and packed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from burnish.models import attach_lora, load_model, sequence_logprobs
    from burnish.models.shared_prefix import (
        SECOND_PASS_FLOPS,
        layout_flops,
        plan_shared_prefixes,
        prompt_lengths,
        shared_prefix_logprobs,
    )

    base, tok = load_model("burnish-tiny")
    policy = attach_lora(base, rank=16, alpha=32).train()
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    params = [p for p in policy.parameters() if p.requires_grad]
    tokens, mask, lengths = build_batch(tok, args.prompts, args.group, args.seed)
    B, T = tokens.shape
    attn = (torch.arange(T)[None, :] < lengths[:, None]).long()
    share = prompt_lengths(mask, lengths)
    w_B_T = torch.randn(B, T, generator=g) * mask

    def plain_per_row():  # the plain path, one row at a time: its own float-rounding spread
        logp_B_T, ent_B_T = torch.zeros(B, T), torch.zeros(B, T)
        parts = []
        for i, n in enumerate(lengths.tolist()):
            logp, ent = sequence_logprobs(policy, tokens[i : i + 1, :n], with_entropy=True)
            parts.append((i, n, logp[0], ent[0]))
        rows = torch.arange(B)
        for i, n, logp, ent in parts:
            logp_B_T = logp_B_T.index_put((rows[i : i + 1], torch.arange(n)), logp)
            ent_B_T = ent_B_T.index_put((rows[i : i + 1], torch.arange(n)), ent)
        return logp_B_T, ent_B_T

    paths = {
        "plain": lambda: sequence_logprobs(
            policy, tokens, attention_mask_B_T=attn, with_entropy=True
        ),
        "prefix": lambda: shared_prefix_logprobs(policy, tokens, lengths, share, with_entropy=True),
    }
    for layout in ("padded", "packed") if args.layouts else ():
        paths[layout] = lambda layout=layout: shared_prefix_logprobs(
            policy, tokens, lengths, share, with_entropy=True, layout=layout
        )

    def run(name: str):
        policy.zero_grad(set_to_none=True)
        logp, ent = paths[name]()
        ((logp * w_B_T).sum() + 0.01 * (ent * w_B_T).sum()).backward()
        return logp.detach(), ent.detach(), [p.grad.clone() for p in params]

    outs = {name: run(name) for name in paths}  # warm-up, and the equality check
    paths["plain_per_row"] = plain_per_row
    outs["plain_per_row"] = run("plain_per_row")
    del paths["plain_per_row"]

    def max_diff(a, b) -> dict[str, float]:
        return {
            "logp": float((a[0] - b[0]).abs().max()),
            "entropy": float((a[1] - b[1]).abs().max()),
            "grad": max(float((x - y).abs().max()) for x, y in zip(a[2], b[2], strict=True)),
            "grad_rel": max(
                float((x - y).abs().max() / x.abs().max().clamp(min=1e-12))
                for x, y in zip(a[2], b[2], strict=True)
            ),
        }

    diff = max_diff(outs["plain"], outs["prefix"])
    noise = max_diff(outs["plain"], outs["plain_per_row"])
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name in paths:
            t0 = time.perf_counter()
            run(name)
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v) for name, v in times.items()}
    result = {
        "rows": B,
        "max_len": T,
        "tokens": int(lengths.sum()),
        "prompt_tokens": int(share.sum()),
        "plain_ms": 1e3 * med["plain"],
        "prefix_ms": 1e3 * med["prefix"],
        "speedup": med["plain"] / med["prefix"],
        "prefix_vs_plain": diff,
        "plain_vs_plain_per_row": noise,
    }
    if args.layouts:
        padded, packed = layout_flops(policy, plan_shared_prefixes(tokens, lengths, share), lengths)
        result |= {
            "padded_ms": 1e3 * med["padded"],
            "packed_ms": 1e3 * med["packed"],
            "padded_arithmetic_gflops_per_layer": (padded - SECOND_PASS_FLOPS) / 1e9,
            "packed_gflops_per_layer": packed / 1e9,
        }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{B} rows (max {T} tokens, {result['tokens']} tokens, {result['prompt_tokens']} of them "
        f"prompt), forward+backward, {args.threads} thread(s), median of {args.repeats}:"
    )
    print(f"  plain  {result['plain_ms']:.1f} ms")
    print(f"  prefix {result['prefix_ms']:.1f} ms   speedup {result['speedup']:.2f}x")
    if args.layouts:
        print(
            f"  padded {result['padded_ms']:.1f} ms, packed {result['packed_ms']:.1f} ms "
            f"(padded - packed {result['padded_ms'] - result['packed_ms']:.1f} ms); estimated "
            f"forward GFLOPs per layer: padded {result['padded_arithmetic_gflops_per_layer']:.3f}"
            f" + second pass {SECOND_PASS_FLOPS / 1e9:.3f}, packed "
            f"{result['packed_gflops_per_layer']:.3f}"
        )
    for label, d in (("prefix vs plain", diff), ("plain one row at a time vs plain", noise)):
        print(
            f"  max |diff| {label}: logp {d['logp']:.2e}, entropy {d['entropy']:.2e}, "
            f"LoRA grad {d['grad']:.2e} (relative to the tensor's largest entry {d['grad_rel']:.1e})"
        )


if __name__ == "__main__":
    main()
