"""Step-level reward-hacking signals: pure functions over one step's numbers.

Inputs are plain nested lists indexed `[group][rollout]` (subscripts `_P_G`: P groups, each with
its own G), with `None` for an unscorable reward. Functions return `nan` when a signal is undefined
for the step (no group with variance, no rollout on one side of a split ...): the monitor leaves
undefined signals out of its metrics rather than reporting a made-up 0.

Series functions (`slope`, `curvature`, `relative_change`) take the history of one signal, the
points as `(step, value)` pairs, so that signals observed only every K steps still get the right
time axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from burnish.types import StopReason

NAN = float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (linear interpolation) of `values`; nan when empty."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else NAN


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their ranks), as Spearman needs."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two equal-length sequences; nan if either has no variance."""
    if len(x) != len(y):
        raise ValueError(f"pearson needs equal lengths, got {len(x)} and {len(y)}")
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 2:
        return NAN
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum()) / denom if denom > 1e-12 else NAN


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of average ranks); nan if either has no variance."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}")
    return pearson(_rank(np.asarray(x, dtype=float)), _rank(np.asarray(y, dtype=float)))


_CORRELATIONS = {"pearson": pearson, "spearman": spearman}


def within_group_correlation(
    x_P_G: Sequence[Sequence[float]],
    rewards_P_G: Sequence[Sequence[float | None]],
    method: str = "spearman",
) -> float:
    """Mean over groups of the correlation between `x` (e.g. length) and reward within the group.

    Rollouts with an unscorable reward are dropped; groups where either side has no variance are
    skipped (their correlation is undefined). Within-group correlation removes the prompt effect:
    longer answers to harder prompts do not count, only "longer than my siblings -> more reward".

    Raises:
        ValueError: unknown `method` (allowed: pearson, spearman) or misaligned groups.
    """
    corr = _CORRELATIONS.get(method)
    if corr is None:
        raise ValueError(f"unknown correlation {method!r}; allowed: {sorted(_CORRELATIONS)}")
    _check_aligned(x_P_G, rewards_P_G)
    vals = []
    for x_G, r_G in zip(x_P_G, rewards_P_G):
        pairs = [(x, r) for x, r in zip(x_G, r_G) if r is not None]
        if len(pairs) < 2:
            continue
        c = corr([p[0] for p in pairs], [p[1] for p in pairs])
        if not math.isnan(c):
            vals.append(c)
    return float(np.mean(vals)) if vals else NAN


def _check_aligned(a_P_G: Sequence[Sequence], b_P_G: Sequence[Sequence]) -> None:
    if len(a_P_G) != len(b_P_G) or any(len(a) != len(b) for a, b in zip(a_P_G, b_P_G)):
        raise ValueError(
            f"misaligned groups: sizes {[len(a) for a in a_P_G]} vs {[len(b) for b in b_P_G]}"
        )


def reward_spread(rewards_P_G: Sequence[Sequence[float | None]], atol: float = 1e-9) -> dict:
    """Variance-collapse statistics of a step's rewards.

    Returns:
        `frac_zero_std`: share of groups (with >= 2 scored rollouts) whose rewards are all equal;
        `group_std`: mean within-group standard deviation (population std, ddof=0);
        `unscorable_frac`: share of rollouts with `None` reward. Undefined entries are nan.
    """
    stds, total, unscorable = [], 0, 0
    for r_G in rewards_P_G:
        total += len(r_G)
        vals = [r for r in r_G if r is not None]
        unscorable += len(r_G) - len(vals)
        if len(vals) >= 2:
            stds.append(float(np.std(vals)))
    return {
        "frac_zero_std": float(np.mean([s <= atol for s in stds])) if stds else NAN,
        "group_std": float(np.mean(stds)) if stds else NAN,
        "unscorable_frac": unscorable / total if total else NAN,
    }


def duplicate_fraction(texts_P_G: Sequence[Sequence[str]]) -> float:
    """Mean over groups of `1 - distinct / n` for the completions (whitespace-stripped)."""
    fracs = [1.0 - len({t.strip() for t in g}) / len(g) for g in texts_P_G if len(g) > 0]
    return float(np.mean(fracs)) if fracs else NAN


def component_share(components_N: Sequence[Mapping[str, float]], names: Iterable[str]) -> float:
    """Share of the reward's absolute magnitude that comes from the named components.

    `sum_i sum_{k in names} |c_ik| / sum_i sum_k |c_ik|` over all rollouts' score components. This
    assumes components are the additive parts of the reward; a format component that supplies most
    of the reward is the "format dominance" signature. nan when no component carries any weight.
    """
    wanted = set(names)
    part = total = 0.0
    for comps in components_N:
        for k, v in comps.items():
            total += abs(v)
            part += abs(v) if k in wanted else 0.0
    return part / total if total > 0 else NAN


def reward_lift(rewards_N: Sequence[float | None], flags_N: Sequence[bool]) -> float:
    """Mean reward of flagged rollouts minus mean reward of unflagged ones (scored rollouts only).

    A positive lift for an injection flag means the grader pays for the injection. nan when
    either side is empty.
    """
    if len(rewards_N) != len(flags_N):
        raise ValueError(f"reward_lift: {len(rewards_N)} rewards but {len(flags_N)} flags")
    hit = [r for r, f in zip(rewards_N, flags_N) if f and r is not None]
    miss = [r for r, f in zip(rewards_N, flags_N) if not f and r is not None]
    return float(np.mean(hit) - np.mean(miss)) if hit and miss else NAN


def stop_reason_fractions(reasons_N: Sequence[StopReason]) -> dict[str, float]:
    """Fraction of rollouts per stop reason, one key per `StopReason` value (all present)."""
    n = len(reasons_N)
    return {r.value: (sum(1 for x in reasons_N if x == r) / n if n else NAN) for r in StopReason}


def short_high_reward_rate(
    rewards_N: Sequence[float | None], words_N: Sequence[int], high: float, max_words: int
) -> float:
    """Share of scored rollouts with reward >= `high` and at most `max_words` words.

    The "master key" signature (a near-empty answer the judge accepts); nan with no scored rollout.
    """
    pairs = [(r, w) for r, w in zip(rewards_N, words_N) if r is not None]
    if not pairs:
        return NAN
    return sum(1 for r, w in pairs if r >= high and w <= max_words) / len(pairs)


# ----------------------------------------------------------------------------------------------
# Series over steps
# ----------------------------------------------------------------------------------------------


def _xy(points: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    pts = [(s, v) for s, v in points if not math.isnan(v)]
    return np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)


def slope(points: Sequence[tuple[int, float]]) -> float:
    """Least-squares slope (value per step) of `(step, value)` points; nan with < 2 distinct steps."""
    x, y = _xy(points)
    if len(x) < 2 or np.ptp(x) == 0:
        return NAN
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def change_over_window(points: Sequence[tuple[int, float]]) -> float:
    """Fitted change across the window: `slope * (last step - first step)` (less noisy than
    last minus first)."""
    x, _ = _xy(points)
    s = slope(points)
    return s * float(np.ptp(x)) if not math.isnan(s) else NAN


def curvature(points: Sequence[tuple[int, float]]) -> float:
    """Second derivative (value per step²) of a least-squares quadratic through the points.

    This is the "acceleration" of a series such as KL to the reference. On evenly spaced steps it
    is a noise-robust estimate of the mean second difference; plain second differences of a
    noisy series are dominated by the noise. nan with fewer than 3 distinct steps.
    """
    x, y = _xy(points)
    if len(np.unique(x)) < 3:
        return NAN
    a = np.polyfit(x - x.mean(), y, 2)[0]
    return float(2.0 * a)


def relative_change(current: float, baseline: float) -> float:
    """`(current - baseline) / |baseline|`; nan when the baseline is 0 or either is nan."""
    if math.isnan(current) or math.isnan(baseline) or baseline == 0:
        return NAN
    return (current - baseline) / abs(baseline)


def aligned_pairs(
    a: Sequence[tuple[int, float]], b: Sequence[tuple[int, float]]
) -> tuple[list[int], list[float], list[float]]:
    """Steps where both series have a (non-nan) point, and the two series' values there."""
    bd = {s: v for s, v in b if not math.isnan(v)}
    trip = [(s, v, bd[s]) for s, v in a if s in bd and not math.isnan(v)]
    return [t[0] for t in trip], [t[1] for t in trip], [t[2] for t in trip]
