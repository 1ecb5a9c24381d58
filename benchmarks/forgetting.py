"""The forgetting experiment of docs/sft_distillation.md: RL against SFT and distillation.

    python benchmarks/forgetting.py --out runs/forgetting            # the grid (about 25 min)
    burnish compare runs/forgetting/*-s* --out docs/forgetting --json
    python benchmarks/forgetting.py --out runs/forgetting --summarize  # median [range] tables

burnish-tiny, new task arithmetic, retention on reverse, calculator, guess-number and keywords
(`examples/forgetting_base.toml`), seeds 0, 1, 2, one torch thread. Methods:

- rl-lora: `burnish train` (DAPO + LoRA, the demo's settings, lr 2e-3);
- rl-full: the same with full fine-tuning (lr 2e-4);
- sft-lora / sft-full: `burnish sft` on arithmetic's gold answers (lr 2e-3 / 2e-4);
- opd: `burnish train` with a `[teacher]`: on-policy distillation (LoRA, lr 2e-3) from the
  teacher, burnish-tiny with the adapter of a `burnish demo` run (seed 0, trained first).

Full fine-tuning takes a learning rate 10x lower than LoRA, fixed before any run (the usual
ratio); nothing was tuned on the results. Every run is 100 optimizer steps with an eval point
every 10.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from burnish.config import load_config, loads_config
from burnish.train.demo import DEMO_CONFIG
from burnish.train.loop import train
from burnish.train.sft import sft

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "examples/forgetting_base.toml"
METHODS: dict[str, tuple[str, list[str]]] = {
    "rl-lora": ("train", []),
    "rl-full": ("train", ["lora.enabled=false", "train.lr=2e-4"]),
    "sft-lora": ("sft", []),
    "sft-full": ("sft", ["lora.enabled=false", "train.lr=2e-4"]),
    "opd": ("train", ["algorithm.dynamic_sampling=false", "algorithm.distill_coef=1.0"]),
}


def teacher(out: Path) -> Path:
    """The teacher adapter: a `burnish demo` run (DAPO + LoRA, 150 steps, seed 0)."""
    run_dir = out / "teacher"
    if not (run_dir / "summary.json").exists():
        cfg = loads_config(DEMO_CONFIG, [f"log.run_dir={str(run_dir)!r}", "model.threads=1"])
        train(cfg)
    return run_dir / "adapter"


def summarize(out: Path, methods: list[str], seeds: list[int]) -> None:
    """Median [min, max] over seeds per method: the run table and the matched-gain table."""
    from statistics import median

    from burnish.compare import compare, load_curve

    curves = [load_curve(out / f"{m}-s{s}") for m in methods for s in seeds]
    result = compare(curves)
    per_run = {r["run_dir"]: r for r in result["runs"]}
    matched = result["_matched_compute"]

    def fmt(values, spec="{:.3f}"):
        v = sorted(values)
        return f"{spec.format(median(v))} [{spec.format(v[0])}, {spec.format(v[-1])}]"

    print(
        f"matched gain G* = {result['matched']['gain']:+.3f} (pass@1); "
        f"R² (retention drop ~ forward KL) = {result['razor']['r2']:.3f} over "
        f"{result['razor']['points']} eval points"
    )
    print(
        "| method | pass@1 after | retention drop after | KL fwd after | retention drop at G* "
        "| KL fwd at G* | steps to G* | samples to G* | tokens to G* | wall s (run) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in methods:
        dirs = [str(out / f"{m}-s{s}") for s in seeds]
        runs, at = [per_run[d] for d in dirs], [matched[d] for d in dirs]
        drops = [
            sum(v["before"] - v["after"] for v in r["retention"].values()) / len(r["retention"])
            for r in runs
        ]
        print(
            f"| {m} | {fmt([r['new_task']['after'] for r in runs])} | {fmt(drops, '{:+.3f}')} "
            f"| {fmt([r['kl_to_base']['forward'] for r in runs])} "
            f"| {fmt([a['retention_drop'] for a in at], '{:+.3f}')} "
            f"| {fmt([a['kl_forward'] for a in at])} | {fmt([a['step'] for a in at], '{:.0f}')} "
            f"| {fmt([a['samples'] for a in at], '{:.0f}')} | {fmt([a['tokens'] for a in at], '{:.0f}')} "
            f"| {fmt([r['wall_seconds'] for r in runs], '{:.0f}')} |"
        )
    skills = sorted(runs[0]["retention"])
    print("\n| method | " + " | ".join(f"{k} before -> after" for k in skills) + " |")
    print("| --- |" + " --- |" * len(skills))
    for m in methods:
        runs = [per_run[str(out / f"{m}-s{s}")] for s in seeds]
        cells = [
            fmt([r["retention"][k]["before"] for r in runs]).split(" ")[0]
            + " -> "
            + fmt([r["retention"][k]["after"] for r in runs])
            for k in skills
        ]
        print(f"| {m} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/forgetting")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--summarize", action="store_true", help="Print the tables of a finished grid.")
    args = p.parse_args()
    out = Path(args.out)
    if args.summarize:
        summarize(out, args.methods, args.seeds)
        return
    adapter = teacher(out)
    for seed in args.seeds:
        for name in args.methods:
            run_dir = out / f"{name}-s{seed}"
            if (run_dir / "summary.json").exists():
                continue
            kind, extra = METHODS[name]
            sets = [f"log.run_dir={str(run_dir)!r}", f"train.seed={seed}", *extra]
            if name == "opd":
                sets.append(f"teacher.adapter={str(adapter)!r}")
            cfg = load_config(BASE, sets + args.overrides)
            summary = (train if kind == "train" else sft)(cfg)
            line = {k: summary[k] for k in ("method", "after", "wall_seconds", "kl_to_base")}
            print(json.dumps({"run": run_dir.name, **line}), flush=True)


if __name__ == "__main__":
    main()
