"""Shared settings of the trainer tests."""


def run_overrides(tiny_dir, run_dir, *extra):
    return [
        f"model.name='{tiny_dir}'",
        "model.threads=1",
        "env.name='reverse'",
        "algorithm.loss='grpo'",
        "rollout.prompts_per_step=3",
        "rollout.group_size=4",
        "rollout.max_new_tokens=6",
        "train.steps=4",
        "train.lr=1e-2",
        "train.checkpoint_every=2",
        "eval.every=0",
        "eval.n_tasks=4",
        "eval.samples=2",
        f"log.run_dir='{run_dir}'",
        *extra,
    ]
