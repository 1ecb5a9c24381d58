"""The RL result tables of benchmarks/RESULTS.md, each from one command.

    python benchmarks/rl_tables.py losses        # arithmetic, each loss, 100 steps
    python benchmarks/rl_tables.py envs          # guess-number and calculator under RL
    python benchmarks/rl_tables.py demo          # `burnish demo` settings, with its wall time

Every run is a normal `burnish train` run of an `examples/` config (or the demo config) with the
given overrides; the tables are read from each run's summary.json (test split, before / after)
and run.db (alerts). `--set` overrides apply to every run (e.g. --set model.threads=1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from burnish.config import load_config, loads_config
from burnish.train.demo import DEMO_CONFIG
from burnish.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("grpo", "dr_grpo", "dapo", "cispo", "gspo")  # the five paper variants of the table


def _run(cfg) -> dict:
    summary = train(cfg)
    summary["env"] = next(iter(summary["per_env"]["after"]))
    return summary


def losses(args) -> None:
    print(
        "| loss | test reward before | test reward after | test pass@1 before -> after "
        "| wall s | alerts |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for loss in LOSSES:
        cfg = load_config(
            ROOT / f"examples/arithmetic_{loss}.toml",
            [f"log.run_dir='{args.out}/{loss}'", *args.overrides],
        )
        s = _run(cfg)
        b, a = s["before"], s["after"]
        print(
            f"| {loss} | {b['mean_reward']:.3f} | {a['mean_reward']:.3f} | "
            f"{b['pass@1']:.3f} -> {a['pass@1']:.3f} | {s['wall_seconds']:.0f} | "
            f"{len(s['alerts'])} |",
            flush=True,
        )


def envs(args) -> None:
    rows = []
    for name, keys in (
        ("guess_number", ("won", "turns")),
        ("calculator", ("correct", "used_tool")),
    ):
        cfg = load_config(
            ROOT / f"examples/{name}.toml", [f"log.run_dir='{args.out}/{name}'", *args.overrides]
        )
        s = _run(cfg)
        env = s["env"]
        b, a = s["per_env"]["before"][env], s["per_env"]["after"][env]
        rows.append((env, b, a, keys, s))
    print("| env | metric | before | after |")
    print("| --- | --- | --- | --- |")
    for env, b, a, keys, s in rows:
        print(f"| {env} | pass@1 | {b['pass@1']:.3f} | {a['pass@1']:.3f} |")
        print(f"| {env} | mean reward | {b['mean_reward']:.3f} | {a['mean_reward']:.3f} |")
        print(f"| {env} | mean turns | {b['mean_turns']:.2f} | {a['mean_turns']:.2f} |")
        for k in keys:
            print(f"| {env} | {k} (mean) | {b['components'][k]:.3f} | {a['components'][k]:.3f} |")
        print(f"| {env} | wall s / alerts | {s['wall_seconds']:.0f} | {len(s['alerts'])} |")


def demo(args) -> None:
    cfg = loads_config(DEMO_CONFIG, [f"log.run_dir='{args.out}/demo'", *args.overrides])
    s = _run(cfg)
    print(
        json.dumps(
            {
                "before": s["before"],
                "after": s["after"],
                "wall_seconds": s["wall_seconds"],
                "alerts": len(s["alerts"]),
            }
        )
    )
    print(
        f"demo: test pass@1 {s['before']['pass@1']:.3f} -> {s['after']['pass@1']:.3f} "
        f"(+{s['after']['pass@1'] - s['before']['pass@1']:.3f}) in {s['wall_seconds']:.0f} s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", choices=["losses", "envs", "demo"])
    p.add_argument("--out", default="runs/tables")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    {"losses": losses, "envs": envs, "demo": demo}[args.table](args)


if __name__ == "__main__":
    main()
