"""An LM head of a large vocabulary on few rows: ``F.linear(x, W)`` against `WideHead`.

Times the float32 product of ``rows`` hidden states with a ``[V, H]`` head weight both ways,
``F.linear`` (``x @ W.T``) and `burnish.models.wide_head.WideHead` (``(W @ x.T).T``, made
contiguous), without gradients as in a decode step, interleaved; prints the median of
``--repeats`` means per shape and the ratio. Shapes: Qwen's 151,936-token vocabulary at hidden
512 (the 100m benchmark size) and 896 (Qwen2.5-0.5B), and a 32,000-token one.

    python benchmarks/wide_head.py
    python benchmarks/wide_head.py --rows 1 4 32 512 --threads 2
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
import torch.nn.functional as F

from burnish.models.wide_head import WideHead

SHAPES = ((151_936, 512), (151_936, 896), (32_000, 512))


def _mean_ms(fn, x: torch.Tensor, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - t) / calls * 1e3


def _compare(head: torch.nn.Linear, wide: WideHead, x: torch.Tensor, a) -> tuple[float, float]:
    """Median ms per call of ``F.linear`` and of `WideHead` on ``x``, interleaved."""
    plain = functools.partial(F.linear, weight=head.weight)
    times: dict[str, list[float]] = {"F.linear": [], "WideHead": []}
    with torch.inference_mode():
        plain(x), wide(x)  # warm-up
        for _ in range(a.repeats):
            times["F.linear"].append(_mean_ms(plain, x, a.calls))
            times["WideHead"].append(_mean_ms(wide, x, a.calls))
    return statistics.median(times["F.linear"]), statistics.median(times["WideHead"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1, 4, 32, 64, 512])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    print(f"{a.threads} thread(s), float32, median of {a.repeats} means of {a.calls} calls")
    for vocab, hidden in SHAPES:
        head = torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False)
        wide = torch.nn.Linear(hidden, vocab, bias=False).requires_grad_(False)
        wide.weight = head.weight
        wide.__class__ = WideHead
        for rows in a.rows:
            lin, wid = _compare(head, wide, torch.randn(rows, 1, hidden), a)
            print(
                f"  V {vocab:7d} x H {hidden:4d}, {rows:4d} rows: F.linear {lin:7.2f} ms  "
                f"WideHead {wid:7.2f} ms  ratio {lin / wid:.2f}"
            )


if __name__ == "__main__":
    main()
