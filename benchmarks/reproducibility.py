"""Does the same training run repeat bit for bit? N runs in separate processes, compared per step.

Each run is `vs_trl.py --size SIZE`'s burnish configuration (seeded; extra overrides with
``--set``) in its own process; the parent collects every step's reward mean, loss and gradient
norm and reports, for each run, whether it matched the first run at every step or the first step
where it did not. ``--busy K`` keeps K busy-looping processes beside the runs (a loaded machine:
OpenMP teams then wait on a thread that shares its core, and `model.adapt_threads`, which
`--set model.adapt_threads=true` turns on, changes the thread count between steps).

    python benchmarks/reproducibility.py --runs 6
    python benchmarks/reproducibility.py --runs 15 --busy 1
    python benchmarks/reproducibility.py --runs 6 --busy 1 --set model.adapt_threads=true
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models  # noqa: E402
import vs_trl  # noqa: E402

METRICS = ("reward/mean", "loss/total", "grad/norm")
BUSY = "while True: pass"


def child(args) -> None:
    """One run; prints one JSON list of ``[reward, loss, grad norm]`` per step."""
    from burnish.config import load_config
    from burnish.train.loop import train

    shape = vs_trl.SHAPES[args.size]
    ns = SimpleNamespace(
        **shape, size=args.size, model=args.model, threads=args.threads, precision="float32",
        seed=args.seed, eval_tasks=1, set=args.set,
    )  # fmt: skip
    if args.steps:
        ns.steps = args.steps
    rows: list[list[float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, vs_trl.burnish_overrides(ns, str(Path(tmp) / "run")))
        train(cfg, on_step=lambda _s, m: rows.append([m.get(k, math.nan) for k in METRICS]))
    print(json.dumps(rows))


def _first_difference(a: list[list[float]], b: list[list[float]]) -> int | None:
    """The first step (0-based) where the runs differ, None when they agree everywhere."""
    if len(a) != len(b):
        return min(len(a), len(b))
    for i, (x, y) in enumerate(zip(a, b)):
        if any(u != v and not (math.isnan(u) and math.isnan(v)) for u, v in zip(x, y)):
            return i
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=bench_models.SIZES, default="tiny")
    p.add_argument("--runs", type=int, default=6)
    p.add_argument("--busy", type=int, default=0, help="busy-looping processes beside the runs")
    p.add_argument("--steps", type=int, default=None, help="default: vs_trl.py's for the size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        model = bench_models.build(args.size, Path(tmp))
        cmd = [sys.executable, __file__, "--child", "--size", args.size, "--model", model]
        cmd += ["--threads", str(args.threads), "--seed", str(args.seed)]
        cmd += ["--steps", str(args.steps)] if args.steps else []
        for s in args.set:
            cmd += ["--set", s]
        busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
        try:
            runs, seconds = [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                seconds.append(time.perf_counter() - t)
                runs.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for b in busy:
                b.kill()
    print(
        f"size {args.size}: {args.runs} runs of {len(runs[0])} steps, {args.threads} thread(s), "
        f"{args.busy} busy process(es) beside them, overrides {args.set or 'none'}"
    )
    same = 0
    for i, run in enumerate(runs):
        diff = _first_difference(runs[0], run)
        same += diff is None
        where = "same as run 0 at every step" if diff is None else f"differs from step {diff}"
        print(f"  run {i}: {seconds[i]:.1f} s, final reward {run[-1][0]:.4f}, {where}")
    print(f"runs identical to the first: {same}/{args.runs}")


if __name__ == "__main__":
    main()
