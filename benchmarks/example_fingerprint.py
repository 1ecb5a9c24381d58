"""Step losses and rewards of every example config, for checking that a refactor changes nothing.

Runs each config in `examples/` for a few steps with one thread and a fixed seed (evaluation cut
down to a handful of tasks), with the scripted stand-in judge for configs that have judges, and
prints one JSON object per config: the per-step `loss/total`, `reward/mean` and `grad/norm`.
Run it on two versions of the code and diff the outputs; 1-thread runs are bit-reproducible.

    python benchmarks/example_fingerprint.py --steps 3 > before.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from burnish.config import load_config
from burnish.judges.scripted import scripted_judge_server
from burnish.judges.scripted_rules import load_rules
from burnish.store import RunStore
from burnish.train.loop import train

RULES = {  # judged examples and the scripted rules they are run against
    "keywords_judge_train.toml": "examples/judges/rules_keywords.toml",
    "keywords_length_judge.toml": "examples/judges/rules_length_biased.toml",
    "keywords_injection_judge.toml": "examples/judges/rules_injection_gullible.toml",
}
KEYS = ("loss/total", "reward/mean", "grad/norm")


def fingerprint(path: Path, steps: int, out_dir: Path) -> dict:
    overrides = [
        f"train.steps={steps}",
        "model.threads=1",
        "eval.every=0",
        "eval.n_tasks=4",
        "eval.samples=1",
        f'log.run_dir="{out_dir / path.stem}"',
    ]
    cfg = load_config(path, overrides)
    if cfg.judges:
        with scripted_judge_server(load_rules(RULES[path.name])) as server:
            for j in cfg.judges:
                j.base_url = server.base_url
            train(cfg)
    else:
        train(cfg)
    store = RunStore.open(cfg.log.run_dir)
    rows = store.steps()
    store.close()
    return {"config": str(path), **{k: [r.get(k) for r in rows] for k in KEYS}}


def _non_rl(path: Path) -> bool:
    """SFT, distillation and on-policy distillation configs (`[sft]` or `[teacher]`): run by
    `burnish sft` / `distill` or needing a teacher adapter, so not fingerprinted here."""
    text = path.read_text()
    return "[sft]" in text or "[teacher]" in text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("configs", nargs="*", help="default: every RL run config under examples/")
    args = ap.parse_args()
    paths = [Path(p) for p in args.configs] or sorted(
        p
        for p in Path("examples").rglob("*.toml")
        if ("[model]" in p.read_text() or "[env]" in p.read_text()) and not _non_rl(p)
    )
    with tempfile.TemporaryDirectory() as tmp:
        for p in paths:
            print(json.dumps(fingerprint(p, args.steps, Path(tmp))), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
