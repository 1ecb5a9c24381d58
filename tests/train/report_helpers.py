"""A short real run whose monitors are set to alert, shared by the report tests."""

from train_helpers import run_overrides

from burnish.config import load_config
from burnish.train.loop import train

TOUCHY_MONITORS = (
    "monitors.options={min_steps = 2, z_threshold = 0.001, cooldown = 0, "
    "signals = ['length/mean', 'entropy/mean', 'reward/frac_zero_std', 'repetition/ngram_frac']}"
)
"""Detectors that alert on almost any move: a 6-step run of a random model raises alerts."""


def alerting_run(tiny_dir, run_dir, steps: int = 6):
    """Train a tiny random model for `steps` steps with touchy monitors; returns the summary."""
    overrides = run_overrides(tiny_dir, run_dir, f"train.steps={steps}", "eval.every=3")
    return train(load_config(None, [*overrides, TOUCHY_MONITORS]))
