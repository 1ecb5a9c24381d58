"""One AdamW step over a LoRA policy's tensors: the per-tensor loop against the fused kernel.

burnish builds its optimizer with ``fused=True`` where it can (`burnish.train.setup`); this
times ``opt.step()`` for each implementation on the LoRA tensors of a benchmark size
(`bench_models`), interleaved, and prints the best of ``--repeats`` means and the ratio.

    python benchmarks/optimizer_step.py --size tiny
    python benchmarks/optimizer_step.py --size 34m
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models  # noqa: E402
import torch  # noqa: E402

KINDS = {"per-tensor": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    from burnish.models import attach_lora, load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=bench_models.SIZES, default="tiny")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = load_model(bench_models.build(a.size, Path(tmp)))
    params = [q for q in attach_lora(model).parameters() if q.requires_grad]
    for q in params:
        q.grad = torch.randn_like(q)
    best: dict[str, float] = {}
    for _ in range(a.repeats):
        for kind, kw in KINDS.items():
            opt = torch.optim.AdamW(params, lr=1e-6, betas=(0.9, 0.999), **kw)
            for _ in range(3):
                opt.step()
            t = time.perf_counter()
            for _ in range(a.steps):
                opt.step()
            ms = (time.perf_counter() - t) / a.steps * 1e3
            best[kind] = min(ms, best.get(kind, ms))
    n = sum(q.numel() for q in params)
    print(f"size {a.size}: {len(params)} LoRA tensors, {n} elements, {a.threads} thread(s)")
    for kind, ms in best.items():
        print(f"  {kind:10s} {ms:.2f} ms per step")
    print(f"time ratio per-tensor/fused: {best['per-tensor'] / best['fused']:.2f}")


if __name__ == "__main__":
    main()
