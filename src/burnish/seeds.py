"""Every seed burnish derives comes from here, so that a run is reproducible from its one seed.

- `seeded_rng(*parts)`: a `random.Random` keyed by its parts joined with "/" (environment splits,
  mixtures, pretraining data): the same parts give the same stream on every platform, and no
  two purposes share a stream unless they name the same parts.
- `sampling_seed(seed, step, round_)`: the sampler seed of one sampling round of a training step.
- `derive_seed(seed, index)`: the seed of sub-stream `index` of a seed (one per episode of a
  batch, one per turn of an episode).
- `mix_seed(*ints)`: a seed from integers by splitmix64 steps (one per row of a sampler batch,
  one per prompt sent to a server).
"""

from __future__ import annotations

import hashlib
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


def derive_seed(seed: int, index: int) -> int:
    """A seed for sub-stream `index` of `seed` (stable across runs and platforms)."""
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


_MASK64 = (1 << 64) - 1


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): stable across runs and platforms."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (p & _MASK64)) & _MASK64
        x = (x + 0x9E3779B97F4A7C15) & _MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        x ^= x >> 31
    return x >> 1
