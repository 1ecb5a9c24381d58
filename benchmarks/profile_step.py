"""Where a burnish RL step's time goes, per phase, at one of the benchmark sizes.

Runs burnish's training loop with the settings of `vs_trl.py --size SIZE` and times each phase
by wrapping the functions that do it (nothing in burnish changes):

- ``sampling``: the batched decode (`LocalSampler._generate`);
- ``episodes``: the rest of collecting groups (chat template, tokenising, episode bookkeeping);
- ``scoring``: `score_group` (the environment's reward);
- ``old/ref logprobs``: the no-grad passes before the update (`step._before_update`);
- ``forward``: the training forward with gradient (`step._forward`);
- ``backward``: `torch.autograd.backward`;
- ``optimizer``: `AdamW.step` (and the grad clip is in ``other``);
- ``pack``: rollouts to the padded training batch;
- ``store``: `RunStore.log_step`;
- ``other``: the rest of the step (advantages, metrics, clip, sync).

Prints seconds per step and the share of each phase over the timed steps (the first
``--warmup`` left out), median over the steps.

    python benchmarks/profile_step.py --size tiny
    python benchmarks/profile_step.py --size 100m --threads 2
    python benchmarks/profile_step.py --size 34m --precision mixed   # vs_trl.PRECISIONS
    python benchmarks/profile_step.py --size tiny --without fast-decode   # one speed-up off
    python benchmarks/profile_step.py --size tiny --steps 80 --ab fast-body  # on/off per step
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models  # noqa: E402
import torch  # noqa: E402
import vs_trl  # noqa: E402

PHASES = (
    "sampling",
    "episodes",
    "scoring",
    "old/ref logprobs",
    "forward",
    "backward",
    "optimizer",
    "pack",
    "store",
    "other",
)


class Clock:
    """Seconds spent per phase in the current step."""

    def __init__(self) -> None:
        self.now: dict[str, float] = defaultdict(float)

    def wrap(self, owner, attr: str, phase: str, *, when=None) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*a, **k):
            if when is not None and not when():
                return fn(*a, **k)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.now[phase] += time.perf_counter() - t

        setattr(owner, attr, timed)

    def wrap_async(self, owner, attr: str, phase: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        async def timed(*a, **k):
            t = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                self.now[phase] += time.perf_counter() - t

        setattr(owner, attr, timed)


def instrument(clock: Clock) -> None:
    # `burnish.train` the attribute is the function: reach the modules through importlib
    groups = importlib.import_module("burnish.train.groups")
    loop = importlib.import_module("burnish.train.loop")
    step = importlib.import_module("burnish.train.step")
    from burnish.rollout.local import LocalSampler
    from burnish.store import RunStore

    clock.wrap(LocalSampler, "_generate", "sampling")
    clock.wrap_async(groups, "score_group", "scoring")
    clock.wrap(step, "_before_update", "old/ref logprobs")
    clock.wrap(step, "_forward", "forward", when=torch.is_grad_enabled)
    clock.wrap(torch.autograd, "backward", "backward")
    clock.wrap(torch.optim.AdamW, "step", "optimizer")
    clock.wrap(loop, "pack", "pack")
    clock.wrap(RunStore, "log_step", "store")


SPEEDUPS = {  # name: (module, attribute, what turns the speed-up off)
    "frozen-head": ("burnish.models.logprobs", "_frozen_linear", lambda head: False),
    "packed-prefix": ("burnish.models.shared_prefix", "packed_pays", lambda *a: False),
    "lean-lora": ("burnish.models.lora", "make_lean", lambda model: 0),
    "wide-head": ("burnish.models.load", "widen_head", lambda model: False),
    # unmerged layers: the fast decode step steps aside too
    "merged-lora": (
        "burnish.models.generate", "merged_lora", lambda model, tokens: contextlib.nullcontext(0)
    ),
    "fast-decode": ("burnish.models.generate", "fast_decoder", lambda model, cache: None),
    "fast-body": ("burnish.models.shared_prefix", "fast_body", lambda model: None),
    # transformers' default: hub kernels on
    "hub-kernels-off": ("burnish.models.load", "_without_hub_kernels", lambda model: None),
}  # fmt: skip
PER_STEP = ("frozen-head", "merged-lora", "fast-decode", "fast-body")
"""The speed-ups `--ab` can turn on and off between steps (read at each call, not at set-up)."""


class _Toggle:
    """One speed-up of `PER_STEP`, switched on or off in place (starts on)."""

    def __init__(self, name: str) -> None:
        module, self.attribute, self.off = SPEEDUPS[name]
        self.module = importlib.import_module(module)
        self.real = getattr(self.module, self.attribute)
        self.on = True

    def set(self, on: bool) -> None:
        self.on = on
        setattr(self.module, self.attribute, self.real if on else self.off)


def profile(args) -> list[dict[str, float]]:
    """Run the loop; one {phase: seconds} per step (``step`` holds the whole step)."""
    from burnish.config import load_config
    from burnish.train.loop import train

    clock, per_step = Clock(), []
    instrument(clock)
    for name in args.without:
        module, attribute, off = SPEEDUPS[name]
        setattr(importlib.import_module(module), attribute, off)
    ab = _Toggle(args.ab) if args.ab else None
    layouts = importlib.import_module("burnish.models.shared_prefix")
    counted = layouts.packed_pays

    def packed_pays(*a):
        packed = counted(*a)
        clock.now["packed"] += float(packed)
        return packed

    layouts.packed_pays = packed_pays

    def on_step(step, m):
        phases = dict(clock.now)
        phases["step"] = m["time/step"]
        if ab is not None:  # this step ran with the speed-up on or off; pick the next one's
            phases["ab_on"] = float(ab.on)
            ab.set(step % 4 in (0, 3))  # on, off, off, on: a drift over the run cancels
        # `time/sample` spans the decode, the scoring and the episode bookkeeping around them
        phases["episodes"] = m["time/sample"] - phases.get("sampling", 0) - phases.get("scoring", 0)
        per_step.append(phases)
        clock.now.clear()

    with tempfile.TemporaryDirectory() as tmp:
        args.model = args.model or bench_models.build(args.size, Path(tmp))
        overrides = vs_trl.burnish_overrides(args, str(Path(tmp) / "run"))
        clock.now.clear()
        train(load_config(None, overrides), on_step=on_step)
    return per_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=bench_models.SIZES, default="tiny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", choices=sorted(vs_trl.PRECISIONS), default="float32")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument(
        "--without",
        action="append",
        default=[],
        choices=sorted(SPEEDUPS),
        help="turn one speed-up off, to measure what it gives (repeatable)",
    )
    p.add_argument(
        "--ab",
        choices=PER_STEP,
        default=None,
        help="turn one speed-up on and off between steps of the same run (on, off, off, on, "
        "...) and print the median step with it and without",
    )
    args = p.parse_args()
    for k, v in vs_trl.SHAPES[args.size].items():
        if k != "steps" or args.steps is None:
            setattr(args, k, v)
    args.eval_tasks = 1
    steps = profile(args)[args.warmup :]
    step_s = statistics.median(s["step"] for s in steps)
    print(
        f"size {args.size}: {args.prompts} prompts x {args.group} x {args.max_new_tokens} tokens, "
        f"{len(steps)} timed steps, {args.threads} thread(s), precision {args.precision}: {step_s:.3f} s/step "
        "(median)"
    )
    packed = sum(s.get("packed", 0.0) for s in steps)
    print(f"  packed layout chosen in {packed:.0f} of the timed steps' training forwards")
    for phase in PHASES:
        if phase == "other":
            values = [s["step"] - sum(s.get(q, 0.0) for q in PHASES[:-1]) for s in steps]
        else:
            values = [s.get(phase, 0.0) for s in steps]
        sec = statistics.median(values)
        print(f"  {phase:17s} {sec:7.3f} s  {100 * sec / step_s:5.1f}%")
    if args.ab:
        on = statistics.median(s["step"] for s in steps if s["ab_on"])
        off = statistics.median(s["step"] for s in steps if not s["ab_on"])
        n_on = sum(1 for s in steps if s["ab_on"])
        print(
            f"{args.ab} on {1e3 * on:.1f} ms ({n_on} steps), off {1e3 * off:.1f} ms "
            f"({len(steps) - n_on} steps): off/on {off / on:.3f}"
        )


if __name__ == "__main__":
    main()
