"""burnish vs TRL's GRPOTrainer at equal settings, at three model sizes, in one command.

Same model, task prompts (arithmetic train split), prompts per step x group size x max new
tokens, loss (DAPO token-mean, clip 0.2/0.28, no KL), LoRA (rank 16, alpha 32, all linear
projections), learning rate, temperature 1, and thread count (burnish's thread governor is off,
``model.adapt_threads=false``, so neither trainer changes its count mid-run). Neither recomputes
activations in the backward: TRL's default gradient checkpointing is turned off, as burnish has
none. Dynamic sampling is
off in burnish because TRL has none. The sizes and their rewards are `bench_models`: ``tiny`` is
the shipped burnish-tiny rewarded for correct answers (both final adapters are then evaluated
with the same burnish evaluation on the test split); ``34m`` and ``100m`` are random-init models with a graded
reward (the share of digits in the reply), so that every step of both trainers is a full update.

``--precision`` (`PRECISIONS`) sets the arithmetic of both: ``float32`` (default), ``mixed``
(bf16 matmuls with float32 weights and activations elsewhere: TRL's ``bf16=True`` autocast,
burnish's ``lora.base_dtype='bfloat16'``) or ``bfloat16`` (the model loaded in bf16 for both).

Every run is its own process (``--worker``), so each trainer's peak RSS is its own and neither
inherits the other's threads or allocator state; ``--repeats N`` runs the pair N times,
interleaved (burnish, TRL, burnish, TRL ...), and reports the median and range.

Prints, per trainer: seconds per step, completion tokens/s, peak RSS, the final reward (and test
pass@1 for tiny); the learning curves (training reward per step, smoothed) of the first repeat;
and on its last line `throughput ratio burnish/trl: X.XX` (the median over the repeats).

    python benchmarks/vs_trl.py --size tiny --repeats 3      # needs: pip install -e .[bench]
    python benchmarks/vs_trl.py --size 34m --repeats 3
    python benchmarks/vs_trl.py --size 100m --repeats 3
    python benchmarks/vs_trl.py --size 34m --precision mixed --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_models (also for env loading)

import bench_models  # noqa: E402

SHAPES = {  # steps, prompts, group, max new tokens, lr, warmup steps left out of the timing
    "tiny": dict(steps=40, prompts=8, group=8, max_new_tokens=12, lr=2e-3, warmup=3),
    "34m": dict(steps=12, prompts=4, group=8, max_new_tokens=16, lr=2e-4, warmup=2),
    "100m": dict(steps=8, prompts=4, group=8, max_new_tokens=16, lr=2e-4, warmup=2),
}


PRECISIONS = {  # the same arithmetic for both trainers
    # everything in float32
    "float32": {"burnish": ["model.dtype='float32'"], "trl": {"dtype": "float32", "bf16": False}},
    # the model loaded in bf16 (LoRA weights float32 in both, as PEFT keeps them)
    "bfloat16": {
        "burnish": ["model.dtype='bfloat16'"],
        "trl": {"dtype": "bfloat16", "bf16": False},
    },
    # bf16 matmuls, float32 weights and activations elsewhere: TRL's bf16=True (autocast),
    # burnish's frozen base weights kept in bf16 (lora.base_dtype)
    "mixed": {
        "burnish": ["model.dtype='float32'", "lora.base_dtype='bfloat16'"],
        "trl": {"dtype": "float32", "bf16": True},
    },
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def burnish_overrides(args, run_dir: str) -> list[str]:
    """burnish's configuration for the settings in ``args`` (also `profile_step.py`'s)."""
    tiny = args.size == "tiny"
    return [
        f"model.name='{args.model}'",
        f"model.threads={args.threads}",
        *PRECISIONS[args.precision]["burnish"],
        f"env.name='{bench_models.reward_env(args.size)}'",
        "env.max_turns=1",
        "algorithm.loss='dapo'",
        "algorithm.dynamic_sampling=false",
        f"rollout.prompts_per_step={args.prompts}",
        f"rollout.group_size={args.group}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        f"train.steps={args.steps}",
        f"train.lr={args.lr}",
        "train.grad_clip=1.0",
        f"train.checkpoint_every={args.steps}",
        "eval.every=0",
        f"eval.n_tasks={args.eval_tasks if tiny else 1}",
        f"eval.samples={4 if tiny else 1}",
        f"log.run_dir='{run_dir}'",
        f"train.seed={args.seed}",
        "monitors.enabled=false",
        "model.adapt_threads=false",  # TRL's thread count is fixed too
        "train.betas=[0.9, 0.999]",  # TRL's (transformers' AdamW default)
        *args.set,
    ]


def burnish_run(args, run_dir: str) -> dict:
    from burnish.config import load_config
    from burnish.train.loop import train

    cfg = load_config(None, burnish_overrides(args, run_dir))
    rewards, times, tokens = [], [], []

    def on_step(step, m):
        rewards.append(m["reward/mean"])
        times.append(m["time/step"])
        tokens.append(m["length/mean"] * m["episodes/count"])

    summary = train(cfg, on_step=on_step)
    out = {"rewards": rewards, "times": times, "tokens": tokens}
    if args.size == "tiny":
        out["after"], out["before"] = summary["after"]["pass@1"], summary["before"]["pass@1"]
    return out


def _reward_func(size: str):
    from burnish.envs.builtin.arithmetic import parse_integer

    if size == "tiny":

        def correct(completions, answer, **_):
            return [float(parse_integer(c[0]["content"]) == a) for c, a in zip(completions, answer)]

        return correct

    def digits(completions, **_):
        return [bench_models.digit_share(c[0]["content"]) for c in completions]

    return digits


def trl_run(args, out_dir: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from burnish.envs import load_env
    from burnish.eval import evaluate
    from burnish.models import load_model
    from burnish.models.lora import DEFAULT_TARGET_MODULES

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    env = load_env("arithmetic")
    it = iter(env.tasks("train", args.seed))
    rows = [next(it) for _ in range(args.prompts * args.steps)]
    ds = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": t.prompt[0].content}], "answer": t.answer}
            for t in rows
        ]
    )
    precision = PRECISIONS[args.precision]["trl"]
    model, tok = load_model(args.model, dtype=precision["dtype"])
    config = GRPOConfig(
        output_dir=out_dir,
        per_device_train_batch_size=args.prompts * args.group,
        num_generations=args.group,
        max_completion_length=args.max_new_tokens,
        learning_rate=args.lr,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        temperature=1.0,
        max_steps=args.steps,
        logging_steps=1,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        seed=args.seed,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        shuffle_dataset=False,
        bf16=precision["bf16"],
        gradient_checkpointing=False,  # TRL's default recomputes activations; burnish keeps them
    )
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=list(DEFAULT_TARGET_MODULES[model.config.model_type]),
        task_type="CAUSAL_LM",
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=_reward_func(args.size),
        args=config,
        train_dataset=ds,
        processing_class=tok,
        peft_config=lora,
    )
    rewards, times, tokens = [], [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.t)

        def on_log(self, _args, _state, _control, logs=None, **k):
            if logs and "reward" in logs:
                rewards.append(logs["reward"])
                tokens.append(logs["completions/mean_length"] * args.prompts * args.group)

    trainer.add_callback(Clock())
    trainer.train()
    out = {"rewards": rewards, "times": times, "tokens": tokens}
    if args.size == "tiny":
        after = evaluate(
            trainer.model,
            tok,
            env,
            samples=4,
            n_tasks=args.eval_tasks,
            split="test",
            temperature=1.0,
            seed=1234,
            max_new_tokens=args.max_new_tokens,
        )
        out["after"] = after.to_dict()["pass@1"]
    return out


def _smooth(xs: list[float], k: int = 5) -> list[float]:
    return [statistics.fmean(xs[max(0, i - k + 1) : i + 1]) for i in range(len(xs))]


def worker(args) -> None:
    """One trainer's run in this process; its results (and peak RSS) go to ``--out``."""
    with tempfile.TemporaryDirectory() as tmp:
        run = burnish_run if args.worker == "burnish" else trl_run
        result = run(args, os.path.join(tmp, args.worker))
    result["peak_rss_mb"] = _peak_rss_mb()
    Path(args.out).write_text(json.dumps(result))


def _spawn(args, name: str, model: str, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--out", str(out), "--model", model]
    flags = (
        "size",
        "steps",
        "prompts",
        "group",
        "max_new_tokens",
        "lr",
        "threads",
        "seed",
        "precision",
    )
    for flag in flags:
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    cmd += ["--eval-tasks", str(args.eval_tasks), *(f"--set={o}" for o in args.set)]
    with tempfile.TemporaryFile("w+") as log:
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=log)
        if done.returncode:
            log.seek(0)
            sys.exit(f"the {name} run failed ({done.returncode}):\n{log.read()[-4000:]}")
    return json.loads(out.read_text())


def _summarise(r: dict, warmup: int) -> dict:
    times, tokens = r["times"][warmup:], r["tokens"][warmup:]
    return {
        "sec": statistics.fmean(times),
        "tps": sum(tokens) / sum(times),
        "rss": r["peak_rss_mb"],
        "final": statistics.fmean(r["rewards"][-3:]),
        "after": r.get("after"),
    }


def _median_range(xs: list[float], fmt: str) -> str:
    text = format(statistics.median(xs), fmt)
    return text if len(xs) == 1 else f"{text} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"


def report(args, runs: dict[str, list[dict]]) -> None:
    rows = {k: [_summarise(r, args.warmup) for r in rs] for k, rs in runs.items()}
    print(
        f"size {args.size}: {args.prompts} prompts x {args.group} completions x "
        f"{args.max_new_tokens} max new tokens, {args.steps} steps ({args.warmup} left out of "
        f"the timing), {args.threads} thread(s), precision {args.precision}, {args.repeats} repeat(s): "
        "median (range)"
    )
    for name, rs in rows.items():
        line = (
            f"  {name:8s} {_median_range([r['sec'] for r in rs], '.3f')} s/step  "
            f"{_median_range([r['tps'] for r in rs], '.0f')} completion tokens/s  "
            f"peak RSS {_median_range([r['rss'] for r in rs], '.0f')} MB  "
            f"final reward {_median_range([r['final'] for r in rs], '.3f')}"
        )
        if rs[0]["after"] is not None:
            line += f"  test pass@1 after {_median_range([r['after'] for r in rs], '.3f')}"
        print(line)
    if "before" in runs["burnish"][0]:
        print(f"  test pass@1 before (same model for both): {runs['burnish'][0]['before']:.3f}")
    print("learning curves of the first repeat (training reward, 5-step moving mean):")
    for name, rs in runs.items():
        print(f"  {name:8s} " + " ".join(f"{x:.2f}" for x in _smooth(rs[0]["rewards"])))
    ratios = [b["tps"] / t["tps"] for b, t in zip(rows["burnish"], rows["trl"])]
    print("throughput ratios per repeat: " + ", ".join(f"{x:.2f}" for x in ratios))
    print(f"throughput ratio burnish/trl: {statistics.median(ratios):.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=bench_models.SIZES, default="tiny")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--model", default=None, help="default: the size's model (bench_models)")
    for flag, kind in (("steps", int), ("prompts", int), ("group", int)):
        p.add_argument(f"--{flag}", type=kind, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--warmup", type=int, default=None, help="steps left out of the timing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default="float32",
        help="both trainers' precision (PRECISIONS)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="both trainers' seed (burnish train.seed, TRL's seed) and the task order",
    )
    p.add_argument("--eval-tasks", type=int, default=200)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an extra burnish config override (repeatable)",
    )
    p.add_argument("--worker", choices=("burnish", "trl"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    for k, v in SHAPES[args.size].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.worker:
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or bench_models.build(args.size, Path(tmp))
        runs: dict[str, list[dict]] = {"burnish": [], "trl": []}
        for i in range(args.repeats):
            for name in runs:
                runs[name].append(_spawn(args, name, model, Path(tmp) / f"{name}{i}.json"))
    report(args, runs)


if __name__ == "__main__":
    main()
