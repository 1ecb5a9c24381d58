"""Peak memory of naive vs chunked log-softmax (forward + backward) on CPU.

Each measurement runs in a fresh subprocess. The worker builds the logits, warms the kernels up on
a tiny input, resets the kernel's resident-set high-water mark (``echo 5 > /proc/self/clear_refs``),
runs forward + backward once and reads ``VmHWM`` from ``/proc/self/status``. The printed peak is the
high-water mark minus the resident set just before the run, i.e. the extra memory the computation
needed (the gradient tensor, the same size as the logits, is included for both methods). A
calibration run allocates a tensor of known size to show the method sees torch CPU allocations.
Workers run with ``MALLOC_MMAP_THRESHOLD_=1048576`` so that freed blocks leave the resident set at
once (see `measure`); both methods are measured the same way.

Usage:
    python benchmarks/logsoftmax_memory.py [--batch 4] [--seq 512] [--vocab 32768]
        [--dtype float32|bfloat16] [--chunk-size 1024] [--json]
Linux only (needs /proc/self/clear_refs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

MIB = 1024 * 1024


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{key}:\s+(\d+)", f.read()).group(1))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _worker(method: str, batch: int, seq: int, vocab: int, dtype: str, chunk_size: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from burnish.algorithms import selective_log_softmax

    def naive(logits, index):
        return torch.log_softmax(logits.float(), -1).gather(-1, index[..., None]).squeeze(-1)

    def chunked(logits, index):
        return selective_log_softmax(logits, index, chunk_size=chunk_size)

    def calibrate(logits, index):  # allocates exactly one float32 tensor of the logits' shape
        buf = torch.ones(logits.shape, dtype=torch.float32)
        return buf[..., 0]

    fn = {"naive": naive, "chunked": chunked, "calibrate": calibrate}[method]
    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)
    logits = torch.randn(batch, seq, vocab, dtype=tdtype).requires_grad_(method != "calibrate")
    index = torch.randint(0, vocab, (batch, seq))
    small = torch.randn(2, 3, 8, dtype=tdtype, requires_grad=method != "calibrate")
    warm = fn(small, torch.zeros(2, 3, dtype=torch.long))  # load kernels before measuring
    if warm.requires_grad:
        warm.sum().backward()

    _reset_peak()
    before = _status_kib("VmRSS")
    t0 = time.perf_counter()
    out = fn(logits, index)
    if out.requires_grad:
        out.sum().backward()
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM")
    return {
        "method": method,
        "peak_extra_mib": (peak - before) / 1024,
        "seconds": seconds,
        "logits_mib": logits.numel() * logits.element_size() / MIB,
        "float32_copy_mib": logits.numel() * 4 / MIB,
    }


def measure(method: str, batch: int, seq: int, vocab: int, dtype: str, chunk_size: int) -> dict:
    """Run one measurement in a fresh Python process and return its result.

    ``method`` may also be a comma-separated list (e.g. ``"naive,chunked"``): they then run one
    after the other in the same process (valid because freed blocks leave the resident set, see
    below) and a dict keyed by method comes back; that saves a torch import in tests.
    """
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        method,
        "--batch",
        str(batch),
        "--seq",
        str(seq),
        "--vocab",
        str(vocab),
        "--dtype",
        dtype,
        "--chunk-size",
        str(chunk_size),
    ]
    # A fixed glibc mmap threshold makes every block >= 1 MiB its own mapping, returned to the OS on
    # free; with the default dynamic threshold, freed blocks under 32 MiB stay resident in the heap
    # and the high-water mark would count allocator caching rather than live tensors.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(MIB)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--vocab", type=int, default=32768)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--chunk-size", type=int, default=1024)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    shape = (a.batch, a.seq, a.vocab, a.dtype, a.chunk_size)
    if a.worker:
        if "," in a.worker:
            print(json.dumps({m: _worker(m, *shape) for m in a.worker.split(",")}))
        else:
            print(json.dumps(_worker(a.worker, *shape)))
        return
    res = {m: measure(m, *shape) for m in ("calibrate", "naive", "chunked")}
    ratio = res["naive"]["peak_extra_mib"] / max(res["chunked"]["peak_extra_mib"], 1e-9)
    if a.json:
        print(json.dumps({**res, "ratio": ratio}))
        return
    print(
        f"logits [{a.batch}, {a.seq}, {a.vocab}] {a.dtype} = {res['naive']['logits_mib']:.0f} MiB; "
        f"chunk_size {a.chunk_size}; forward + backward, 1 thread"
    )
    print(
        f"calibration: one float32 copy ({res['calibrate']['float32_copy_mib']:.0f} MiB) "
        f"measured as {res['calibrate']['peak_extra_mib']:.0f} MiB"
    )
    for m in ("naive", "chunked"):
        print(
            f"{m:8s} peak extra memory {res[m]['peak_extra_mib']:8.0f} MiB   "
            f"time {res[m]['seconds']:.2f} s"
        )
    print(f"ratio naive / chunked: {ratio:.2f}x")


if __name__ == "__main__":
    main()
