"""One line per monitor signal saying what it measures (the report and `burnish inspect` show it).

Keys are signal names without the `monitor/` prefix; `describe` also resolves per-scorer names
(`heldout/<scorer>/gap`) and canary probes (`probe/<name>`).
"""

from __future__ import annotations

SIGNAL_HELP: dict[str, str] = {
    "reward/mean": "mean reward of the step's scored rollouts (the trend the other signals are read against)",
    "length/mean": "mean completion length in sampled tokens; a steady rise can mean padding for a length-biased grader",
    "length/p95": "95th percentile of completion length: a tail of very long answers",
    "length/drift": "mean length relative to its early-run baseline (0 = unchanged, 1 = doubled)",
    "length/reward_corr": "within-group correlation of reward and length: is the grader paying for length?",
    "repetition/ngram_frac": "fraction of repeated n-grams in a completion (loops, copied phrases)",
    "repetition/compression": "how much a completion shrinks under zlib; high = repetitive text",
    "hedging/rate": "share of completions that offer several candidate answers at once",
    "hedging/markers": "mean number of answer markers per completion",
    "format/share": "share of the reward earned by format/style components rather than correctness",
    "injection/rate": "share of completions with grader-directed phrases ('ignore previous instructions', 'score: 10')",
    "injection/lift": "reward of completions with injections minus reward of those without",
    "overlap/mean": "n-gram overlap of completions with the rubric or reference text they must not copy",
    "master_key/rate": "share of very short completions that still earn a high reward",
    "reward/frac_zero_std": "share of groups whose rollouts all earned the same reward (no learning signal)",
    "reward/group_std": "mean within-group reward standard deviation",
    "reward/duplicate_frac": "share of completions identical to another in their group",
    "reward/unscorable_frac": "share of rollouts no scorer could score (left out of training)",
    "kl/mean": "KL divergence of the policy to the reference model",
    "kl/accel": "curvature of the KL curve: KL rising faster and faster",
    "entropy/mean": "policy entropy per sampled token (nats)",
    "entropy/drop": "entropy below its early-run baseline (0 = unchanged, 1 = gone)",
    "chars/invisible_rate": "share of completions with invisible or control characters",
    "chars/non_ascii": "mean share of non-ASCII characters in a completion",
    "stop/done": "share of episodes the environment ended normally",
    "stop/length": "share of episodes cut off at the token limit",
    "stop/error": "share of episodes that ended in an environment or tool error",
    "stop/max_turns": "share of episodes that ran out of turns",
    "heldout/gap": "train reward minus the held-out scorer's reward: rising = reward the held-out check does not confirm",
    "heldout/mean": "mean reward of the held-out scorer (never in the gradient)",
    "probe/max": "highest judge score on the canary probes (garbage answers that should score about 0)",
    "probe/mean": "mean judge score on the canary probes",
}
"""Signal name -> what it measures."""


def describe(signal: str) -> str:
    """What a monitor signal measures, in one line (`signal` with or without `monitor/`)."""
    name = signal.removeprefix("monitor/")
    if name in SIGNAL_HELP:
        return SIGNAL_HELP[name]
    parts = name.split("/")
    if parts[0] == "heldout" and len(parts) == 3:
        return SIGNAL_HELP.get(f"heldout/{parts[2]}", "").replace(
            "the held-out scorer", f"held-out scorer {parts[1]!r}"
        )
    if parts[0] == "probe":
        return f"judge score of canary probe {'/'.join(parts[1:])!r} (should be about 0)"
    return ""


FLAG_SIGNALS: dict[str, str] = {
    "injection": "injection/rate",
    "hedging": "hedging/rate",
    "repetition": "repetition/ngram_frac",
    "invisible": "chars/invisible_rate",
    "extreme_length": "length/mean",
}
"""Per-rollout flag -> the step signal it feeds (the signal that raised the flag)."""

FLAG_HELP: dict[str, str] = {
    "injection": "grader-directed phrases found (value: how many)",
    "hedging": "several candidate answers offered (value: how many)",
    "repetition": "repeated n-gram fraction above monitors.repetition_flag (value: the fraction)",
    "invisible": "invisible or control characters (value: how many)",
    "extreme_length": "longer than monitors.length_flag_factor x the step's median (value: tokens)",
}
"""Per-rollout flag -> why a rollout carries it."""
