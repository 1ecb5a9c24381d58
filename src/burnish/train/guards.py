"""Checks that keep a run from silently doing nothing: the run directory before anything is
written, judge health while it trains, and advice on settings that only show up in the numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from burnish.algorithms import LossConfig
from burnish.algorithms.losses import SUM_NORM
from burnish.config import RunConfig
from burnish.judges.metrics import health_summary
from burnish.train.checkpoint import list_checkpoints

log = logging.getLogger("burnish")


class RunHealthError(RuntimeError):
    """The run cannot train as set up (e.g. nothing has been scorable for several steps)."""


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse a run directory that cannot hold this run, before anything is written.

    Raises:
        ValueError: `run_dir` is a file; or `resume` and there is no run or no complete
            checkpoint to resume from (the message says what is there and what to do).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"log.run_dir {run_dir} is a file, not a directory; name a directory")
    if not resume:
        return
    if not (run_dir / "run.db").exists():
        raise ValueError(
            f"nothing to resume in {run_dir}: no run was written there; start the run without "
            "--resume"
        )
    if not list_checkpoints(run_dir):
        raise ValueError(
            f"{run_dir} holds a run but no complete checkpoint to resume from; start it again "
            "without --resume in another log.run_dir (or delete this one)"
        )


@dataclass
class ScorableWatch:
    """Stops a run after `limit` consecutive steps in which no rollout could be scored."""

    limit: int
    streak: int = 0

    def observe(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log judge trouble of this step; raise `RunHealthError` once the streak hits the limit."""
        failed = any(v for k, v in metrics.items() if k.startswith("judge/failed_calls"))
        unscorable = metrics.get("reward/unscorable_frac", 0.0)
        detail = health_summary(metrics) or "no judge call failed"
        if failed or unscorable > 0:
            log.warning(
                "step %d: %.0f%% of rollouts unscorable (%s)", step, 100 * unscorable, detail
            )
        nothing_scored = metrics.get("episodes/count", 0.0) > 0 and unscorable >= 1.0
        self.streak = self.streak + 1 if nothing_scored else 0
        if self.streak >= self.limit:
            raise RunHealthError(
                f"no rollout could be scored in the last {self.streak} steps (up to step {step}; "
                f"{detail}): check the judges and their endpoints; the run stops here "
                "(train.max_unscorable_steps) and can continue with --resume from its last "
                "checkpoint"
            )


def loss_advice(loss: LossConfig, metrics: Mapping[str, float]) -> list[str]:
    """Warnings about the loss settings given what a trained step measured."""
    cfg, out = loss.resolved(), []
    mean_len = metrics.get("length/mean")
    norm = cfg.max_completion_len
    if cfg.aggregation == SUM_NORM and mean_len and norm and norm > 8 * mean_len:
        out.append(
            f"{cfg.name} divides each sequence's loss by max_completion_len = {norm} sampled "
            f"tokens while rollouts sample {mean_len:.1f} on average: the gradient is about "
            f"{norm / mean_len:.0f}x smaller than the lengths call for; lower "
            "rollout.max_new_tokens (or the turn limit) to the lengths you expect"
        )
    return out


def advisories(config: RunConfig) -> list[str]:
    """Settings that are valid but probably not meant, each with its reason (logged by `train`)."""
    a, out = config.algorithm, []
    cap = 10.0 if a.loss == "cispo" else 1.0  # CISPO's eps_high sets its IS-weight cap
    if a.eps_high is not None and a.eps_high > cap:
        what = "the IS-weight cap" if a.loss == "cispo" else "the upper clip"
        out.append(
            f"algorithm.eps_high = {a.eps_high}: {what} is at ratio {1 + a.eps_high:g}, so it "
            f"almost never binds (defaults: {_default_eps(a.loss)})"
        )
    if a.eps_low is not None and a.eps_low >= 1 and a.loss != "cispo":
        out.append(
            f"algorithm.eps_low = {a.eps_low}: ratios cannot fall below 0, so the lower clip "
            "never binds"
        )
    return out


def _default_eps(loss: str) -> str:
    d = LossConfig(name=loss, max_completion_len=1).resolved()
    return f"eps_low {d.eps_low:g}, eps_high {d.eps_high:g}"
