"""Train with a judge served by the scripted stand-in, and report what the monitors saw.

For each (config, rules) pair: starts the scripted judge in-process on a free port, points the
config's judges at it, trains, and prints one row: the judge reward (training) and the held-out
programmatic check at the start and end, test-split keyword check before/after, the step where
the held-out check peaked, and the first alert of each rule.

    python benchmarks/judged_runs.py \
        examples/judges/keywords_judge_train.toml=examples/judges/rules_keywords.toml \
        examples/hacking/keywords_length_judge.toml=examples/judges/rules_length_biased.toml \
        examples/hacking/keywords_injection_judge.toml=examples/judges/rules_injection_gullible.toml
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from burnish.config import load_config
from burnish.judges.scripted import scripted_judge_server
from burnish.judges.scripted_rules import load_rules
from burnish.store import RunStore
from burnish.train.loop import train


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else float("nan")


def run_one(config_path: str, rules_path: str, overrides: list[str], train_it: bool = True) -> dict:
    cfg = load_config(config_path, overrides)
    if train_it:
        with scripted_judge_server(load_rules(rules_path)) as server:
            for j in cfg.judges:
                j.base_url = server.base_url
            summary = train(cfg)
    else:  # report a finished run
        summary = json.loads((Path(cfg.log.run_dir) / "summary.json").read_text())
    store = RunStore.open(cfg.log.run_dir)
    steps = store.steps()
    heldout_key = next(
        (k for k in steps[0] if k.startswith("monitor/heldout/") and k.endswith("/mean")), None
    )
    judge = [s.get("reward/mean") for s in steps]
    held = [s.get(heldout_key) for s in steps] if heldout_key else [None] * len(steps)
    k = max(1, len(steps) // 10)
    first_alert = {}
    for a in store.alerts():
        first_alert.setdefault(a["rule"], (a["step"], a["signal"]))
    peak = max(range(len(held)), key=lambda i: -1 if held[i] is None else held[i])
    store.close()
    return {
        "config": config_path,
        "rules": Path(rules_path).name,
        "judge_start": _mean(judge[:k]),
        "judge_end": _mean(judge[-k:]),
        "held_start": _mean(held[:k]),
        "held_end": _mean(held[-k:]),
        "held_peak_step": peak,
        "test_before": summary["before"]["mean_reward"],
        "test_after": summary["after"]["mean_reward"],
        "alerts": first_alert,
        "n_alerts": len(summary["alerts"]),
        "wall_s": summary["wall_seconds"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pairs", nargs="+", help="CONFIG=RULES")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--report-only", action="store_true", help="read finished runs, train nothing")
    args = p.parse_args()
    rows = []
    for pair in args.pairs:
        config_path, _, rules_path = pair.partition("=")
        if not rules_path:
            sys.exit(f"expected CONFIG=RULES, got {pair!r}")
        rows.append(run_one(config_path, rules_path, args.overrides, not args.report_only))
    print(
        "| config | judge rules | judge reward start -> end | held-out check start -> end "
        "| held-out peak step | test keyword check before -> after | first alert per rule |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        alerts = (
            ", ".join(f"{rule} @ {s} ({sig})" for rule, (s, sig) in r["alerts"].items()) or "none"
        )
        print(
            f"| {Path(r['config']).name} | {r['rules']} | {r['judge_start']:.3f} -> "
            f"{r['judge_end']:.3f} | {r['held_start']:.3f} -> {r['held_end']:.3f} | "
            f"{r['held_peak_step']} | {r['test_before']:.3f} -> {r['test_after']:.3f} | "
            f"{alerts} ({r['n_alerts']} in all) |"
        )


if __name__ == "__main__":
    main()
