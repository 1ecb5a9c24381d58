"""Per-rollout features of a step and the step-level signals built from them.

`step_features` runs every text signal once per rollout; `step_signals` aggregates them into the
step's signals (names without the `monitor/` prefix) and `rollout_flags` turns one rollout's
features into the flags that decide which samples a person should look at.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from burnish.monitors import stats, text
from burnish.monitors.config import MonitorConfig
from burnish.types import Group, Score, StopReason, Trajectory


@dataclass(frozen=True)
class RolloutFeatures:
    """Everything the monitor measures on one rollout."""

    completion: str
    length: int
    """Sampled tokens."""
    words: int
    repetition: float
    compression: float
    hedging: text.Hedging
    injection: tuple[str, ...]
    """Names of the injection-lexicon entries that matched."""
    overlap: float | None
    """Containment overlap with the task's rubric/reference text; None when the task has none."""
    chars: text.CharStats
    stop_reason: StopReason
    reward: float | None
    components: Mapping[str, float]


def task_references(info: Mapping, keys: Sequence[str]) -> list[str]:
    """Reference strings found under `keys` of a task's info (a string or a list of strings)."""
    refs: list[str] = []
    for k in keys:
        v = info.get(k)
        if isinstance(v, str):
            refs.append(v)
        elif isinstance(v, (list, tuple)):
            refs.extend(str(x) for x in v)
    return refs


def rollout_features(
    traj: Trajectory,
    score: Score,
    cfg: MonitorConfig,
    patterns: Mapping[str, re.Pattern[str]],
    references: Sequence[str],
) -> RolloutFeatures:
    """Measure one rollout (its completion text, length, stop reason and score)."""
    c = traj.completion
    return RolloutFeatures(
        completion=c,
        length=traj.num_sampled,
        words=text.word_count(c),
        repetition=text.repeated_ngram_fraction(c, cfg.ngram_n, cfg.ngram_unit),
        compression=text.compression_ratio(c),
        hedging=text.hedging(c, cfg.answer_pattern),
        injection=tuple(text.injection_hits(c, patterns)),
        overlap=(
            text.ngram_overlap(c, references, cfg.ngram_n, cfg.ngram_unit) if references else None
        ),
        chars=text.char_stats(c),
        stop_reason=traj.stop_reason,
        reward=score.value,
        components=score.components,
    )


def step_features(groups: Sequence[Group], cfg: MonitorConfig) -> list[list[RolloutFeatures]]:
    """Features of every rollout, indexed `[group][rollout]`."""
    patterns = text.compile_patterns(cfg.injection_patterns)
    out = []
    for g in groups:
        refs = task_references(g.task.info, cfg.overlap_keys)
        out.append(
            [
                rollout_features(t, s, cfg, patterns, refs)
                for t, s in zip(g.trajectories, g.scores, strict=True)
            ]
        )
    return out


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else stats.NAN


def step_signals(feats_P_G: Sequence[Sequence[RolloutFeatures]], cfg: MonitorConfig) -> dict:
    """The step's signals from its rollout features (history-dependent ones are added later).

    Returns:
        signal name -> value (nan when undefined this step), names as in `config.SIGNALS`.
    """
    flat = [f for g in feats_P_G for f in g]
    rewards_P_G = [[f.reward for f in g] for g in feats_P_G]
    rewards = [f.reward for f in flat]
    lengths = [float(f.length) for f in flat]
    scored = [r for r in rewards if r is not None]
    overlaps = [f.overlap for f in flat if f.overlap is not None]
    spread = stats.reward_spread(rewards_P_G)
    stops = stats.stop_reason_fractions([f.stop_reason for f in flat])
    injected = [bool(f.injection) for f in flat]
    return {
        "reward/mean": _mean(scored),
        "length/mean": _mean(lengths),
        "length/p95": stats.percentile(lengths, 95),
        "length/reward_corr": stats.within_group_correlation(
            [[float(f.length) for f in g] for g in feats_P_G], rewards_P_G, cfg.correlation
        ),
        "repetition/ngram_frac": _mean([f.repetition for f in flat]),
        "repetition/compression": _mean([f.compression for f in flat]),
        "hedging/rate": _mean([float(f.hedging.hedged) for f in flat]),
        "hedging/markers": _mean([float(f.hedging.markers) for f in flat]),
        "format/share": stats.component_share([f.components for f in flat], cfg.format_components),
        "injection/rate": _mean([float(x) for x in injected]),
        "injection/lift": stats.reward_lift(rewards, injected),
        "overlap/mean": _mean(overlaps),
        "master_key/rate": stats.short_high_reward_rate(
            rewards, [f.words for f in flat], cfg.high_reward, cfg.short_words
        ),
        "reward/frac_zero_std": spread["frac_zero_std"],
        "reward/group_std": spread["group_std"],
        "reward/unscorable_frac": spread["unscorable_frac"],
        "reward/duplicate_frac": stats.duplicate_fraction(
            [[f.completion for f in g] for g in feats_P_G]
        ),
        "chars/invisible_rate": _mean([float(f.chars.suspicious) for f in flat]),
        "chars/non_ascii": _mean([f.chars.non_ascii_ratio for f in flat]),
        **{f"stop/{k}": v for k, v in stops.items()},
    }


def rollout_flags(f: RolloutFeatures, median_length: float, cfg: MonitorConfig) -> dict:
    """The per-rollout signals that fire on `f`, each with its value.

    Flags: `injection` (number of lexicon entries matched), `hedging` (distinct candidate answers,
    when more than one), `repetition` (repeated-n-gram fraction above `cfg.repetition_flag`),
    `invisible` (invisible + control characters), `extreme_length` (tokens, when above
    `cfg.length_flag_factor` times the step's median length).
    """
    flags: dict[str, float] = {}
    if f.injection:
        flags["injection"] = float(len(f.injection))
    if f.hedging.hedged:
        flags["hedging"] = float(f.hedging.distinct)
    if f.repetition > cfg.repetition_flag:
        flags["repetition"] = f.repetition
    if f.chars.suspicious:
        flags["invisible"] = float(f.chars.invisible + f.chars.control)
    long = median_length > 0 and f.length > cfg.length_flag_factor * median_length
    if long and not math.isnan(median_length):
        flags["extreme_length"] = float(f.length)
    return flags
