"""Diversity: train on one environment or on a mixture, at the same number of samples, and test
on every trained environment, on environments no run trained on, and on harder held-out
variants of the trained task.

    python benchmarks/diversity.py --seeds 1 2 3 --set model.threads=1

Each run is a normal `burnish train` run of the shipped burnish-tiny (LoRA, DAPO loss without
dynamic sampling, so every run samples exactly steps × prompts × group episodes), trained on
`arithmetic` alone or on `arithmetic` + `reverse` + `calculator` (equal weights). Its final
adapter is then evaluated on the test split of each environment of `EVALS` (200 tasks × 4
samples, temperature 1, the same tasks and sampler seed for every model), as is the base model.
The table gives pass@1: the base model, then the median and range over the seeds of each
condition.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from transformers.utils import logging as hf_logging

from burnish.config import loads_config
from burnish.envs import load_env
from burnish.eval import evaluate
from burnish.models.load import load_model
from burnish.models.lora import load_adapter
from burnish.models.threads import set_threads
from burnish.train.loop import train

CONDITIONS: dict[str, list[str]] = {
    "arithmetic only": ["arithmetic"],
    "mix of 3": ["arithmetic", "reverse", "calculator"],
}
EVALS: dict[str, tuple[str, dict, int, str]] = {
    # label: (environment, kwargs, max new tokens per turn, role in the comparison)
    "arithmetic": ("arithmetic", {}, 12, "trained (both)"),
    "reverse": ("reverse", {}, 16, "trained (mix)"),
    "calculator": ("calculator", {}, 40, "trained (mix)"),
    "keywords": ("keywords", {}, 64, "left out"),
    "guess-number": ("guess-number", {}, 6, "left out"),
    "arithmetic, operands 100-199": ("arithmetic", {"low": 100, "high": 199}, 12, "harder"),
    "arithmetic, operands 100-999": ("arithmetic", {"low": 100, "high": 999}, 12, "harder"),
    "reasoning-gym/basic_arithmetic, 2 terms": (
        "reasoning-gym/basic_arithmetic",
        {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2, "operators": "+-"},
        12,
        "held-out format",
    ),
}
RUN = """
[model]
name = "burnish-tiny"
[algorithm]
loss = "dapo"
dynamic_sampling = false
[rollout]
prompts_per_step = 8
group_size = 8
max_new_tokens = 40
[train]
lr = 2e-3
[eval]
every = 0
n_tasks = 16
samples = 1
"""


def _config(envs: list[str], seed: int, run_dir: Path, args):
    mix = "".join(f'\n[[env.mix]]\nname = "{e}"\n' for e in envs) if len(envs) > 1 else ""
    single = f'\n[env]\nname = "{envs[0]}"\n' if len(envs) == 1 else ""
    overrides = [f"train.seed={seed}", f"train.steps={args.steps}", f"log.run_dir='{run_dir}'"]
    return loads_config(RUN + mix + single, [*overrides, *args.overrides])


def _evaluate(model, tokenizer, args) -> dict[str, float]:
    out = {}
    for label, (name, kwargs, tokens, _) in EVALS.items():
        res = evaluate(model, tokenizer, load_env(name, **kwargs), samples=args.samples,
                       n_tasks=args.n_tasks, temperature=1.0, seed=0, max_new_tokens=tokens)  # fmt: skip
        out[label] = res.pass_at[1]
    return out


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}–{max(values):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n-tasks", type=int, default=200)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--out", default="runs/diversity")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    hf_logging.disable_progress_bar()
    out = Path(args.out)
    threads = _config(["arithmetic"], 0, out / "probe", args).model.threads
    set_threads(threads)
    results: dict[str, dict[str, list[float]]] = {c: {k: [] for k in EVALS} for c in CONDITIONS}
    samples: dict[str, list[int]] = {c: [] for c in CONDITIONS}
    base, tokenizer = load_model("burnish-tiny")
    before = _evaluate(base, tokenizer, args)
    for condition, envs in CONDITIONS.items():
        for seed in args.seeds:
            run_dir = out / f"{condition.split()[0]}-seed{seed}"
            summary = train(_config(envs, seed, run_dir, args))
            samples[condition].append(summary["compute"]["samples"])
            model, tokenizer = load_model("burnish-tiny")
            model = load_adapter(model, str(run_dir / "adapter"))
            for label, value in _evaluate(model, tokenizer, args).items():
                results[condition][label].append(value)
            print(f"{condition} seed {seed}: {json.dumps({k: round(v[-1], 3) for k, v in results[condition].items()})}", flush=True)  # fmt: skip
    names = list(CONDITIONS)
    print(f"\ntest pass@1, {args.n_tasks} tasks × {args.samples} samples; training samples per "
          f"run: {', '.join(f'{c} {sorted(set(s))}' for c, s in samples.items())}; "
          f"median [range] over seeds {args.seeds}\n")  # fmt: skip
    print("| test environment | role | base | " + " | ".join(names) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in names) + " |")
    for label, (*_, role) in EVALS.items():
        cells = " | ".join(_cell(results[c][label]) for c in names)
        print(f"| {label} | {role} | {before[label]:.3f} | {cells} |")


if __name__ == "__main__":
    main()
