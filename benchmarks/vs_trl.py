"""burnish vs TRL's GRPOTrainer at equal settings, in one command.

Same model (burnish-tiny), task (arithmetic train split), prompts per step x group size x max new
tokens, loss (DAPO token-mean, clip 0.2/0.28, no KL), LoRA (rank 16, alpha 32, all linear
projections), learning rate, temperature 1, and thread count. Dynamic sampling is off in burnish
because TRL has none. Both final adapters are evaluated with the same burnish evaluation on the
arithmetic test split.

Prints seconds per step and completion tokens/s for both, both learning curves (training reward
per step, smoothed), and on its last line `throughput ratio burnish/trl: X.XX`.

    python benchmarks/vs_trl.py --steps 40        # needs: pip install -e .[bench]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def burnish_run(args, run_dir: str) -> dict:
    from burnish.config import load_config
    from burnish.train.loop import train

    cfg = load_config(
        None,
        [
            f"model.name='{args.model}'",
            f"model.threads={args.threads}",
            "env.name='arithmetic'",
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
            f"eval.n_tasks={args.eval_tasks}",
            "eval.samples=4",
            f"log.run_dir='{run_dir}'",
            "monitors.enabled=false",
        ],
    )
    rewards, times, tokens = [], [], []

    def on_step(step, m):
        rewards.append(m["reward/mean"])
        times.append(m["time/step"])
        tokens.append(m["length/mean"] * m["episodes/count"])

    summary = train(cfg, on_step=on_step)
    return {
        "rewards": rewards,
        "times": times,
        "tokens": tokens,
        "after": summary["after"],
        "before": summary["before"],
    }


def trl_run(args, out_dir: str) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from burnish.envs import load_env
    from burnish.envs.builtin.arithmetic import parse_integer
    from burnish.eval import evaluate
    from burnish.models import load_model
    from burnish.models.lora import DEFAULT_TARGET_MODULES

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    env = load_env("arithmetic")
    it = iter(env.tasks("train", 0))
    rows = [next(it) for _ in range(args.prompts * args.steps)]
    ds = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": t.prompt[0].content}], "answer": t.answer}
            for t in rows
        ]
    )

    def correct(completions, answer, **_):
        return [float(parse_integer(c[0]["content"]) == a) for c, a in zip(completions, answer)]

    model, tok = load_model(args.model)
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
        seed=0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        shuffle_dataset=False,
        bf16=False,
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
        reward_funcs=correct,
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
    policy = trainer.model
    after = evaluate(
        policy,
        tok,
        env,
        samples=4,
        n_tasks=args.eval_tasks,
        split="test",
        temperature=1.0,
        seed=1234,
        max_new_tokens=args.max_new_tokens,
    ).to_dict()
    return {"rewards": rewards, "times": times, "tokens": tokens, "after": after}


def _smooth(xs: list[float], k: int = 5) -> list[float]:
    return [statistics.fmean(xs[max(0, i - k + 1) : i + 1]) for i in range(len(xs))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="burnish-tiny")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--group", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3, help="steps left out of the timing")
    p.add_argument("--eval-tasks", type=int, default=200)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        b = burnish_run(args, os.path.join(tmp, "burnish"))
        t = trl_run(args, os.path.join(tmp, "trl"))
    w = args.warmup
    rows = {}
    for name, r in (("burnish", b), ("trl", t)):
        sec = statistics.fmean(r["times"][w:])
        tps = sum(r["tokens"][w:]) / sum(r["times"][w:])
        rows[name] = (sec, tps)
        print(
            f"{name:8s} {sec:.3f} s/step  {tps:8.0f} completion tokens/s  "
            f"test pass@1 after {r['after']['pass@1']:.3f}"
        )
    print(f"test pass@1 before (same model for both): {b['before']['pass@1']:.3f}")
    print("learning curves (training reward, 5-step moving mean):")
    for name, r in (("burnish", b), ("trl", t)):
        print(f"  {name:8s} " + " ".join(f"{x:.2f}" for x in _smooth(r["rewards"])))
    print(f"throughput ratio burnish/trl: {rows['burnish'][1] / rows['trl'][1]:.2f}")


if __name__ == "__main__":
    main()
