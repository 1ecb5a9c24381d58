"""The two composite alert rules of docs/judges_and_hacking.md §3.2, as pure functions of histories.

1. `train_up_heldout_flat`: the training reward rises across the window while a held-out scorer
   (never in the gradient) stays flat or falls: the canonical over-optimisation signature.
2. `reward_with_exploit`: the reward rises while a cheap-exploit signal (length, format share,
   injection lift, overlap) rises with it, the two correlated across steps.

Histories are `(step, value)` points over the rolling window. "Rise" is the least-squares fitted
change across the window (`stats.change_over_window`), which is far less noisy than last-minus-
first on a per-step series.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from burnish.monitors import stats

Points = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class RuleResult:
    """A composite rule's verdict on the current window."""

    fired: bool
    value: float
    threshold: float
    evidence: str


def _quiet(reason: str) -> RuleResult:
    return RuleResult(False, math.nan, math.nan, reason)


def train_up_heldout_flat(
    train: Points, heldout: Points, rise_min: float, flat_frac: float, min_points: int
) -> RuleResult:
    """Rule 1: train reward rises by >= `rise_min` while held-out changes by <= `flat_frac` x that.

    Both series should be measured on the same rollouts (the train reward of the rollouts the
    held-out scorer saw) and on comparable scales.

    Returns:
        `value` is the train change across the window and `threshold` is `rise_min`.
    """
    steps, tr, ho = stats.aligned_pairs(train, heldout)
    if len(tr) < min_points:
        return _quiet(f"only {len(tr)} aligned points (< {min_points})")
    d_train = stats.change_over_window(list(zip(steps, tr)))
    d_held = stats.change_over_window(list(zip(steps, ho)))
    fired = d_train >= rise_min and d_held <= flat_frac * d_train
    return RuleResult(
        fired,
        d_train,
        rise_min,
        f"over steps {steps[0]}-{steps[-1]} the train reward changed by {d_train:+.3f} while the "
        f"held-out score changed by {d_held:+.3f} (flat or falling: <= {flat_frac:g} x train)",
    )


def reward_with_exploit(
    reward: Points, exploit: Points, name: str, rise_min: float, corr_min: float, min_points: int
) -> RuleResult:
    """Rule 2: reward rises by >= `rise_min`, `name` rises too, and they correlate >= `corr_min`.

    Returns:
        `value` is the Pearson correlation across steps and `threshold` is `corr_min`.
    """
    steps, r, e = stats.aligned_pairs(reward, exploit)
    if len(r) < min_points:
        return _quiet(f"only {len(r)} aligned points (< {min_points})")
    d_reward = stats.change_over_window(list(zip(steps, r)))
    d_exploit = stats.change_over_window(list(zip(steps, e)))
    corr = stats.pearson(r, e)
    fired = d_reward >= rise_min and d_exploit > 0 and not math.isnan(corr) and corr >= corr_min
    return RuleResult(
        fired,
        corr,
        corr_min,
        f"over steps {steps[0]}-{steps[-1]} the reward changed by {d_reward:+.3f} while {name} "
        f"changed by {d_exploit:+.4g}; correlation across steps {corr:.2f}",
    )


def divergence(train: Points, heldout: Points) -> dict[str, float]:
    """Train-vs-held-out summary over the window: slopes, mean gap and per-step correlation.

    Returns:
        `train_slope`, `slope` (held-out), `gap` (mean of train minus held-out at shared steps),
        `trend_corr` (Pearson across steps). Undefined entries are nan.
    """
    _, tr, ho = stats.aligned_pairs(train, heldout)
    return {
        "train_slope": stats.slope(train),
        "slope": stats.slope(heldout),
        "gap": (sum(tr) - sum(ho)) / len(tr) if tr else math.nan,
        "trend_corr": stats.pearson(tr, ho) if len(tr) >= 2 else math.nan,
    }
