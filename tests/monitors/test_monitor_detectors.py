"""Rolling z-score and CUSUM on synthetic series: quiet on noise, firing after a step change."""

import json
import math

import numpy as np
import pytest

from burnish.monitors.detectors import Cusum, RollingZScore, detector_from_dict


def fired_steps(det, series):
    return [i for i, x in enumerate(series) if det.update(float(x)).fired]


def noise(n, seed=0):
    return np.random.default_rng(seed).normal(0.0, 1.0, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flat_noisy_series_raises_nothing(seed):
    x = noise(300, seed)
    assert fired_steps(RollingZScore(), x) == []
    assert fired_steps(Cusum(), x) == []
    assert fired_steps(Cusum(direction="down"), x) == []


def test_zscore_fires_at_the_step_change():
    x = np.concatenate([noise(50), noise(30, seed=7) + 8.0])
    fired = fired_steps(RollingZScore(threshold=5.0, window=20, warmup=10), x)
    # the first shifted value is ~8 sd above the previous window
    assert fired[0] == 50
    # once the window fills with shifted values the new level is normal again
    assert max(fired) < 50 + 20


def test_zscore_respects_direction_and_warmup():
    x = np.concatenate([noise(30), noise(5, seed=3) - 8.0])
    assert fired_steps(RollingZScore(direction="up"), x) == []
    assert fired_steps(RollingZScore(direction="down"), x)[0] == 30
    # a jump during warm-up cannot fire
    early = [0.0, 0.1, -0.1, 100.0, 0.0, 0.1]
    assert fired_steps(RollingZScore(warmup=10), early) == []


def test_cusum_fires_at_a_computed_step():
    # 30 values alternating -1, +1 (mean 0, std 1.017), then 3.0 from step 30 on.
    # Self-starting: each 3.0 is standardised by all earlier values, then joins them.
    # step 30: S = 0.52 + (3 - 0)/1.017 - 0.5 = 2.97; the baseline then creeps up
    # (mean 0.10, 0.19, 0.27 ...), so the increments shrink: S = 5.02, 6.81, 8.40 > h=8 at step 33
    x = [(-1.0) ** (i + 1) for i in range(30)] + [3.0] * 20
    c = Cusum(k=0.5, h=8.0, warmup=10)
    fired = fired_steps(c, x)
    assert fired[0] == 33
    # S restarts after an alarm; as the shifted values join the baseline the next alarm needs
    # longer (7 steps), and the one after that does not come within the series
    assert fired == [33, 40]


def test_cusum_detects_a_small_shift_that_zscore_misses():
    # a 1.5 sd shift: too small for one z-score > 5, but CUSUM accumulates it
    x = np.concatenate([noise(60, seed=4), noise(40, seed=5) + 1.5])
    assert fired_steps(RollingZScore(), x) == []
    fired = fired_steps(Cusum(), x)
    assert fired and 60 <= fired[0] < 75


def test_constant_warmup_does_not_divide_by_zero():
    z = RollingZScore(warmup=3)
    for _ in range(5):
        assert not z.update(0.0).fired
    d = z.update(1.0)  # any move off a constant series is an anomaly
    assert d.fired and math.isfinite(d.statistic)


def test_nan_is_ignored():
    z = RollingZScore(warmup=2)
    for v in [1.0, 1.1, 0.9]:
        z.update(v)
    before = z.to_dict()
    d = z.update(float("nan"))
    assert not d.fired and z.to_dict() == before


@pytest.mark.parametrize("make", [RollingZScore, Cusum])
def test_state_round_trip_continues_identically(make):
    x = np.concatenate([noise(40), noise(20, seed=9) + 8.0])
    a = make()
    for v in x[:30]:
        a.update(float(v))
    b = detector_from_dict(json.loads(json.dumps(a.to_dict())))
    rest_a = [a.update(float(v)) for v in x[30:]]
    rest_b = [b.update(float(v)) for v in x[30:]]
    assert rest_a == rest_b
    assert any(d.fired for d in rest_a)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown direction 'sideways'"):
        RollingZScore(direction="sideways")
    with pytest.raises(ValueError, match="h > 0"):
        Cusum(h=0)
    with pytest.raises(ValueError, match="unknown detector kind 'ewma'"):
        detector_from_dict({"kind": "ewma"})
