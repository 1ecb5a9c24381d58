"""Every seed burnish derives comes from here, so that a run is reproducible from its one seed.

- `seeded_rng(*parts)`: a `random.Random` keyed by its parts joined with "/" (environment splits,
  mixtures, pretraining data): the same parts give the same stream on every platform, and no
  two purposes share a stream unless they name the same parts.
- `sampling_seed(seed, step, round_)`: the sampler seed of one sampling round of a training step.
"""

from __future__ import annotations

import random


def seeded_rng(*parts: object) -> random.Random:
    """A `random.Random` seeded with the string `"/".join(parts)` (stable across runs)."""
    return random.Random("/".join(str(p) for p in parts))


def sampling_seed(seed: int, step: int, round_: int) -> int:
    """The sampler seed of round `round_` of training step `step` of a run seeded `seed`.

    Distinct for every (step, round) of a run (rounds < 101, steps < 9,901); the per-row seeds
    of the batch are derived from it by the sampler.
    """
    return seed * 1_000_003 + step * 101 + round_
