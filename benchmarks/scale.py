"""Scale-out throughput on this machine, and a simulated 8-GPU timeline from measured phases.

Four runs of the demo's training (burnish-tiny, arithmetic, DAPO with dynamic sampling, 8 x 8
samples a step, LoRA rank 16), each `--steps` steps with one torch thread per process, on one
local Ray cluster started here (2 CPUs):

- `single`: the single-process path (no Ray);
- `w2-sync`: 2 Ray rollout workers, `max_off_policy_steps = 0`;
- `w2-async1`: 2 workers, `max_off_policy_steps = 1` (sampling overlaps training);
- `w2-async1-r2`: the same with 2 trainer ranks (gloo).

Steps/s and samples/s are taken over the steps after the first `--warmup` (worker start-up and
the evaluations before and after the run are not counted); with `--repeats N` the runs are
interleaved N times and each figure is the median over the repeats (the machine is shared). The single-process run's per-step
phases (`time/sample`: rollouts and scoring; the rest of `time/step`: the update, monitors,
logging) then drive a discrete-event simulation of one 8-GPU node: rollout of step i starts
when the rollout pool finished step i-1 and the policy of step i-k exists; training of step i
starts when its rollouts and step i-1's training are done. Rollout time divides by the rollout
GPUs (independent vLLM servers), training time by the trainer GPUs (data parallel); both linear,
an upper bound. The per-step rollout times keep their measured spread (dynamic sampling's extra
rounds), which is what staleness 2 absorbs better than 1.

    python benchmarks/scale.py [--steps 30] [--warmup 3] [--repeats 3] [--runs single ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from burnish.config import loads_config  # noqa: E402
from burnish.train.demo import DEMO_CONFIG  # noqa: E402
from burnish.train.loop import train  # noqa: E402

RUNS = {
    "single": [],
    "w2-sync": ["scale.rollout_workers=2"],
    "w2-async1": ["scale.rollout_workers=2", "scale.max_off_policy_steps=1"],
    "w2-async1-r2": [
        "scale.rollout_workers=2",
        "scale.max_off_policy_steps=1",
        "scale.trainer_workers=2",
    ],
}


def measure(name: str, extra: list[str], steps: int, warmup: int, root: str) -> dict:
    stamps: list[float] = []
    metrics: list[dict] = []

    def on_step(step: int, m: dict) -> None:
        stamps.append(time.perf_counter())
        metrics.append(m)

    overrides = [
        "model.threads=1",
        f"train.steps={steps}",
        f"train.checkpoint_every={steps}",
        "eval.every=0",
        "eval.n_tasks=8",
        "eval.samples=1",
        "scale.actor_cpus=0.5",
        f"log.run_dir='{root}/{name}'",
        *extra,
    ]
    train(loads_config(DEMO_CONFIG, overrides), on_step=on_step)
    span = stamps[-1] - stamps[warmup - 1]
    timed = metrics[warmup:]
    return {
        "run": name,
        "steps_per_s": len(timed) / span,
        "samples_per_s": sum(m["compute/samples"] for m in timed) / span,
        "wait_sample_s": statistics.median(m["time/sample"] for m in timed),
        "step_s": statistics.median(m["time/step"] for m in timed),
        "staleness_mean": statistics.mean(m.get("async/staleness_mean", 0.0) for m in timed),
        "rollout_s": [m["time/sample"] for m in metrics[warmup:]],
        "train_s": [m["time/step"] - m["time/sample"] for m in metrics[warmup:]],
    }


def _median(name: str, runs: list[dict]) -> dict:
    """The median of each figure over repeats; the per-step phases of every repeat pooled."""
    out: dict = {"run": name, "repeats": [r["steps_per_s"] for r in runs]}
    for key in ("steps_per_s", "samples_per_s", "wait_sample_s", "step_s", "staleness_mean"):
        out[key] = statistics.median(r[key] for r in runs)
    for key in ("rollout_s", "train_s"):
        out[key] = [x for r in runs for x in r[key]]
    return out


def simulate(rollout_s, train_s, n_rollout, n_train, k, colocated=False, sync_s=0.0):
    """Seconds per step of the pipeline in the module docstring (steady state over the
    steps given) and the first steps' (rollout start, rollout end, train end)."""
    n = len(rollout_s)
    r_end, t_end, events = [0.0] * n, [0.0] * n, []
    for i in range(n):
        r = rollout_s[i] / n_rollout
        t = train_s[i] / n_train + sync_s
        if colocated:  # every GPU samples, then every GPU trains
            start = t_end[i - 1] if i else 0.0
            r_end[i] = start + r
        else:
            start = max(r_end[i - 1] if i else 0.0, t_end[i - k - 1] if i - k - 1 >= 0 else 0.0)
            r_end[i] = start + r
        t_end[i] = max(r_end[i], t_end[i - 1] if i else 0.0) + t
        events.append((start, r_end[i], t_end[i]))
    return t_end[-1] / n, events


LAYOUTS = [
    ("8 GPUs colocated, sync (sample, then train)", 8, 8, 0, True),
    ("6 vLLM + 2 trainer, sync", 6, 2, 0, False),
    ("6 vLLM + 2 trainer, staleness 1", 6, 2, 1, False),
    ("6 vLLM + 2 trainer, staleness 2", 6, 2, 2, False),
    ("4 vLLM + 4 trainer, staleness 1", 4, 4, 1, False),
]


def report_simulation(rollout_s, train_s, label: str) -> None:
    print(f"\nsimulated 8-GPU node ({label}):")
    print("| layout | s/step | steps/s | vs colocated |")
    print("| --- | --- | --- | --- |")
    base = None
    for name, nr, nt, k, colo in LAYOUTS:
        per_step, _ = simulate(rollout_s, train_s, nr, nt, k, colocated=colo)
        base = base or per_step
        print(f"| {name} | {per_step:.3f} | {1 / per_step:.2f} | {base / per_step:.2f}x |")
    for k in (0, 1, 2):
        best = min((simulate(rollout_s, train_s, nr, 8 - nr, k)[0], nr) for nr in range(1, 8))
        print(
            f"| best split, staleness {k}: {best[1]} vLLM + {8 - best[1]} trainer | "
            f"{best[0]:.3f} | {1 / best[0]:.2f} | {base / best[0]:.2f}x |"
        )
    _, events = simulate(rollout_s, train_s, 6, 2, 1)
    print("\ntimeline, 6 vLLM + 2 trainer, staleness 1 (first 5 steps, seconds):")
    for i, (a, b, c) in enumerate(events[:5]):
        print(f"  step {i}: rollout {a:6.3f} -> {b:6.3f}   train -> {c:6.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--runs", nargs="*", default=list(RUNS))
    p.add_argument("--json", default=None, help="also write the measurements here")
    args = p.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20)
    each: dict[str, list[dict]] = {name: [] for name in args.runs}
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.repeats):
            for name in args.runs:
                r = measure(name, RUNS[name], args.steps, args.warmup, f"{root}/{i}")
                each[name].append(r)
                print(f"{name} #{i}: {r['steps_per_s']:.2f} steps/s", file=sys.stderr)
    ray.shutdown()
    results = [_median(name, rs) for name, rs in each.items()]
    print(
        "| run | steps/s | samples/s | median wait for groups (s) | median step (s) "
        "| staleness | steps/s of each repeat |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['run']} | {r['steps_per_s']:.2f} | {r['samples_per_s']:.0f} | "
            f"{r['wait_sample_s']:.3f} | {r['step_s']:.3f} | {r['staleness_mean']:.2f} | "
            + ", ".join(f"{x:.2f}" for x in r["repeats"])
            + " |"
        )
    single = next((r for r in results if r["run"] == "single"), None)
    if single is not None:
        rs, ts = single["rollout_s"], single["train_s"]
        share = sum(rs) / (sum(rs) + sum(ts))
        print(
            f"\nmeasured phases (single): rollout {statistics.median(rs):.3f} s, "
            f"train {statistics.median(ts):.3f} s median per step; rollout share {share:.2f}"
        )
        report_simulation(rs, ts, "measured phases")
        scale = 3 * sum(ts) / sum(rs)  # the rollout share a GPU run typically has: 0.75
        report_simulation([r * scale for r in rs], ts, "rollout share 0.75")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
