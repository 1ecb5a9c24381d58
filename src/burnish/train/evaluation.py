"""The evaluations of a run (RL, on-policy distillation, SFT): before training, at every eval
point, after; and the run's `summary.json`. A run that samples on a server (`[sampler]`)
evaluates there too, with the evaluation's own seed stream.

Each eval point evaluates the new task's environments on their test split and, through the
run's `ForgettingProbe`, the retention skills and the KL to the base policy
(`burnish.train.forgetting`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from burnish.eval import evaluate_async
from burnish.report import write_report
from burnish.train.engines import eval_sampler
from burnish.train.forgetting import forgetting_summary

if TYPE_CHECKING:
    from burnish.train.loop import Run


async def run_eval(run: Run, step: int) -> dict[str, Any]:
    """Evaluate on every environment's test split; log and return {env: metrics}."""
    settings, out = run.plan.eval, {}
    for env in run.eval_envs:
        res = await evaluate_async(
            run.policy,
            run.tokenizer,
            env,
            samples=settings.samples,
            n_tasks=settings.n_tasks,
            split="test",
            temperature=settings.temperature,
            seed=settings.seed,
            max_new_tokens=settings.max_new_tokens,
            sampler=eval_sampler(run.sampler, settings.seed),
            **settings.budget.kwargs(),
        )
        metrics = res.to_dict()
        run.store.log_eval(step, env.name, metrics)
        out[env.name] = metrics
    if run.probe is not None:
        await run.probe.measure(
            run.policy,
            run.tokenizer,
            run.eval_envs,
            settings,
            run.store,
            step,
            sampler=eval_sampler(run.sampler, settings.seed),
        )
    return out


async def finish_run(run: Run, t0: float) -> dict[str, Any]:
    """The final evaluation, `summary.json` and `report.html` (resumed runs included)."""
    store = run.store
    after = await run_eval(run, step=(store.last_step() or 0) + 1)
    steps = store.steps()
    summary = {
        "run_dir": str(run.run_dir),
        "method": run.method,
        "steps": len(steps),
        "wall_seconds": round(time.time() - t0, 2),
        "before": _headline(run.before),
        "after": _headline(after),
        "per_env": {"before": run.before, "after": after},
        **forgetting_summary(store),
        "compute": {
            k: int(sum(s.get(f"compute/{k}", 0) for s in steps)) for k in ("samples", "tokens")
        },
        "scale": scale_summary(run),
        "alerts": [
            {"rule": a["rule"], "step": a["step"], "signal": a["signal"], "evidence": a["evidence"]}
            for a in store.alerts()
        ],
    }
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    write_report(run.run_dir)
    return summary


def scale_summary(run: Run) -> dict[str, Any]:
    """Where the run sampled and trained (`[scale]` as used) and what its Ray workers did."""
    s = run.config.scale
    return {
        "rollout_workers": s.rollout_workers,
        "trainer_workers": s.trainer_workers,
        "trainer_strategy": s.trainer_strategy,
        "judge_workers": s.judge_workers,
        "max_off_policy_steps": s.max_off_policy_steps,
        **run.source.stats(),
    }


def _headline(per_env: dict[str, dict[str, Any]]) -> dict[str, float]:
    """pass@1 and mean reward averaged over environments (equal weight)."""
    keys = ("pass@1", "mean_reward")
    return {k: sum(m[k] for m in per_env.values()) / len(per_env) for k in keys}
