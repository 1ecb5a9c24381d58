"""Per-step rollout metrics, as a pure function of the step's groups."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence

from burnish.types import Group


def step_metrics(groups: Sequence[Group]) -> dict[str, float]:
    """Reward, component, length, turn and stop-reason metrics of one step's groups.

    Keys: reward/mean, reward/std, reward/max, reward/unscorable_frac, reward/<component>,
    group/frac_zero_std, group/mean_std, length/mean, length/max, turns/mean,
    stop/<reason> (fractions), episodes/errors, and `env_metrics` for a mixture.
    """
    if not groups:
        return {"episodes/count": 0.0}
    rewards = [r for g in groups for r in g.rewards]
    scored = [r for r in rewards if r is not None]
    trajs = [t for g in groups for t in g.trajectories]
    comps: dict[str, list[float]] = defaultdict(list)
    for g in groups:
        for s in g.scores:
            for k, v in s.components.items():
                comps[k].append(float(v))
    stds = []
    for g in groups:
        vals = [r for r in g.rewards if r is not None]
        if len(vals) >= 2:
            stds.append(statistics.stdev(vals))
    lengths = [t.num_sampled for t in trajs]
    stops = Counter(t.stop_reason.value for t in trajs)
    out = {
        "episodes/count": float(len(trajs)),
        "episodes/errors": float(sum(t.error is not None for t in trajs)),
        "reward/mean": statistics.fmean(scored) if scored else float("nan"),
        "reward/std": statistics.pstdev(scored) if len(scored) > 1 else 0.0,
        "reward/max": max(scored) if scored else float("nan"),
        "reward/unscorable_frac": 1 - len(scored) / len(rewards),
        "group/frac_zero_std": sum(s == 0 for s in stds) / len(stds) if stds else 1.0,
        "group/mean_std": statistics.fmean(stds) if stds else 0.0,
        "length/mean": statistics.fmean(lengths),
        "length/max": float(max(lengths)),
        "turns/mean": statistics.fmean(t.turns for t in trajs),
    }
    out.update({f"reward/{k}": statistics.fmean(v) for k, v in comps.items()})
    out.update({f"stop/{k}": n / len(trajs) for k, n in stops.items()})
    out.update(env_metrics(groups))
    return out


def env_metrics(groups: Sequence[Group]) -> dict[str, float]:
    """Per-environment reward of a step that saw more than one environment (a mixture):
    `env/<name>/reward_mean` (scorable rollouts) and `env/<name>/groups`; {} otherwise."""
    by_env: dict[str, list[Group]] = defaultdict(list)
    for g in groups:
        by_env[g.task.env].append(g)
    if len(by_env) < 2:
        return {}
    out: dict[str, float] = {}
    for name, gs in sorted(by_env.items()):
        scored = [r for g in gs for r in g.rewards if r is not None]
        out[f"env/{name}/reward_mean"] = statistics.fmean(scored) if scored else float("nan")
        out[f"env/{name}/groups"] = float(len(gs))
    return out


def rollout_compute(groups: Sequence[Group]) -> dict[str, float]:
    """The sampling part of a step's compute: `compute/samples` (episodes sampled) and
    `compute/tokens` (sampled tokens); the trainer adds the tokens its forward passes process
    (and a distillation teacher's), so a run's totals compare RL, SFT and distillation."""
    trajs = [t for g in groups for t in g.trajectories]
    return {
        "compute/samples": float(len(trajs)),
        "compute/tokens": float(sum(t.num_sampled for t in trajs)),
    }
