"""`Monitor`: turns each step's groups into `monitor/*` metrics, alerts and flagged samples.

The trainer calls `observe` once per step, after scoring and before the advantages, and reads the
returned `MonitorReport`: it logs `metrics`, stores `alerts` and `flagged`, and follows `action`
("log", "checkpoint" or "stop") when an alert fired. Every `config.probe_every` steps it also
awaits `run_probes` with the live scorer. The monitor never changes a reward. Its whole state is
JSON-safe (`state_dict` / `load_state_dict`), so a resumed run makes the same decisions as an
uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from burnish.monitors import rules, stats
from burnish.monitors.config import MIN_SPREAD, SIGNALS, MonitorConfig
from burnish.monitors.detectors import Cusum, RollingZScore, detector_from_dict
from burnish.monitors.features import RolloutFeatures, step_features, step_signals
from burnish.monitors.flagged import example_rollouts, flags_of, select_flagged
from burnish.monitors.probes import CANARY_ANSWERS, GroupScorer, score_probes
from burnish.monitors.records import Alert, MonitorReport
from burnish.types import Group, Task

HeldOut = Mapping[str, Sequence[Sequence[float | None]]]
"""Held-out scores per scorer name, `[group][rollout]`."""


def heldout_of(groups: Sequence[Group]) -> HeldOut:
    """The groups' held-out scores per scorer, `[group][rollout]` (None where a group lacks one)."""
    names = sorted({name for g in groups for name in g.heldout})
    return {
        n: [list(g.heldout.get(n, (None,) * len(g.trajectories))) for g in groups] for n in names
    }


"""Held-out scorer name -> its scores `[group][rollout]` (None: not scored), aligned with groups."""

_EVIDENCE_FLAG = {
    "injection/rate": "injection",
    "injection/lift": "injection",
    "hedging/rate": "hedging",
    "repetition/ngram_frac": "repetition",
    "repetition/compression": "repetition",
    "chars/invisible_rate": "invisible",
    "length/mean": "extreme_length",
    "length/p95": "extreme_length",
    "length/drift": "extreme_length",
}
"""Which per-rollout flag picks the example rollouts of an alert on a signal (else top reward)."""

_STATE_VERSION = 1


def _detector(kind: str, signal: str, cfg: MonitorConfig) -> RollingZScore | Cusum:
    direction, floor = SIGNALS[signal], MIN_SPREAD.get(signal, 1e-6)
    makers = {
        "zscore": lambda: RollingZScore(
            cfg.z_threshold, cfg.window, cfg.min_steps, direction, floor
        ),
        "cusum": lambda: Cusum(cfg.cusum_k, cfg.cusum_h, cfg.min_steps, direction, floor),
    }
    return makers[kind]()


def _generic_signal(key: str) -> str:
    """`heldout/<scorer>/gap` -> `heldout/gap` (detector settings are per generic signal)."""
    parts = key.split("/")
    return f"heldout/{parts[-1]}" if parts[0] == "heldout" and len(parts) == 3 else key


class Monitor:
    """Reward-hacking and drift monitor of one run (see the module docstring)."""

    def __init__(self, config: MonitorConfig | None = None) -> None:
        self.config = config or MonitorConfig()
        self.history: dict[str, list[list[float]]] = {}
        """signal -> [[step, value], ...], the last `window` observations."""
        self.baselines: dict[str, list[float]] = {}
        """signal -> [count, sum] of its first `baseline_steps` observations."""
        self.detectors: dict[str, RollingZScore | Cusum] = {}
        self.last_alert: dict[str, int] = {}
        self.observed = 0

    # ------------------------------------------------------------------------------------------
    def should_probe(self, step: int) -> bool:
        """Whether canary probes are due at `step` (every `config.probe_every` steps)."""
        k = self.config.probe_every
        return k > 0 and step % k == 0

    def observe(
        self,
        step: int,
        groups: Sequence[Group],
        *,
        train_metrics: Mapping[str, float] | None = None,
    ) -> MonitorReport:
        """Measure one step, update the detectors and rules, and report.

        Args:
            step: the training step (monotonically increasing).
            groups: the step's scored groups, with their held-out scores (`Group.heldout`).
            train_metrics: the step's training metrics (reads `config.kl_key`, `entropy_key`).
        """
        cfg = self.config
        heldout = heldout_of(groups)
        feats_P_G = step_features(groups, cfg)
        sig = step_signals(feats_P_G, cfg)
        sig["length/drift"] = stats.relative_change(
            sig["length/mean"], self._baseline("length/mean", sig["length/mean"])
        )
        sig.update(self._training_signals(step, train_metrics or {}))
        sig.update(self._heldout_signals(feats_P_G, heldout))
        for name, v in sig.items():
            self._push(name, step, v)
        sig.update(self._heldout_trends(heldout))

        flags_P_G = flags_of(feats_P_G, cfg)
        alerts = self._detect(step, sig, feats_P_G, flags_P_G)
        alerts += self._composite(step, heldout, feats_P_G, flags_P_G)
        flagged = select_flagged(step, [g.task.id for g in groups], feats_P_G, flags_P_G, cfg)
        self.observed += 1
        metrics = {f"monitor/{k}": float(v) for k, v in sig.items() if not math.isnan(v)}
        return MonitorReport(
            step, metrics, tuple(alerts), flagged, cfg.on_alert if alerts else None
        )

    async def run_probes(
        self, step: int, scorer: GroupScorer, task: Task, probes: Mapping[str, str] = CANARY_ANSWERS
    ) -> MonitorReport:
        """Score the canary answers to `task` with the live scorer; alert on any above threshold.

        Raises:
            Whatever the scorer raises: a scorer failure is not a probe result.
        """
        res = await score_probes(scorer, task, probes)
        thr = self.config.probe_threshold
        metrics = {"monitor/probe/max": res.max, "monitor/probe/mean": res.mean}
        metrics.update({f"monitor/probe/{k}": v for k, v in res.scored.items()})
        alerts = tuple(
            Alert(
                "canary_probe",
                step,
                name,
                value,
                thr,
                f"canary {name!r} ({probes[name][:60]!r}) scored {value:.3f} > {thr:g} on task "
                f"{task.id!r}: the scorer pays for an answer that answers nothing",
            )
            for name, value in res.above(thr).items()
        )
        return MonitorReport(
            step,
            {k: v for k, v in metrics.items() if not math.isnan(v)},
            alerts,
            (),
            self.config.on_alert if alerts else None,
            {"probe_scores": dict(res.scores)},
        )

    # ------------------------------------------------------------------------------------------
    def _push(self, name: str, step: int, value: float) -> None:
        if math.isnan(value):
            return
        h = self.history.setdefault(name, [])
        h.append([step, float(value)])
        del h[: max(0, len(h) - max(self.config.window, self.config.accel_window))]

    def _points(self, name: str, last: int | None = None) -> list[tuple[int, float]]:
        h = self.history.get(name, [])
        h = h[-last:] if last else h
        return [(int(s), v) for s, v in h]

    def _baseline(self, name: str, value: float) -> float:
        """Mean of the first `baseline_steps` observations of `name` (this one included)."""
        count, total = self.baselines.setdefault(name, [0, 0.0])
        if count < self.config.baseline_steps and not math.isnan(value):
            self.baselines[name] = [count + 1, total + value]
        count, total = self.baselines[name]
        return total / count if count else stats.NAN

    def _training_signals(self, step: int, tm: Mapping[str, float]) -> dict[str, float]:
        cfg = self.config
        kl = float(tm.get(cfg.kl_key, math.nan))
        ent = float(tm.get(cfg.entropy_key, math.nan))
        kl_pts = self._points("kl/mean", cfg.accel_window - 1)
        if not math.isnan(kl):
            kl_pts.append((step, kl))
        accel = stats.curvature(kl_pts) if len(kl_pts) >= cfg.accel_window else stats.NAN
        drop = -stats.relative_change(ent, self._baseline("entropy/mean", ent))
        return {"kl/mean": kl, "kl/accel": accel, "entropy/mean": ent, "entropy/drop": drop}

    def _heldout_signals(
        self, feats_P_G: Sequence[Sequence[RolloutFeatures]], heldout: HeldOut
    ) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, h_P_G in heldout.items():
            pairs = [
                (f.reward, h)
                for fs, hs in zip(feats_P_G, h_P_G)
                for f, h in zip(fs, hs)
                if f.reward is not None and h is not None
            ]
            tr, ho = [p[0] for p in pairs], [p[1] for p in pairs]
            hmean = sum(ho) / len(ho) if ho else stats.NAN
            tmean = sum(tr) / len(tr) if tr else stats.NAN
            out[f"heldout/{name}/mean"] = hmean
            out[f"heldout/{name}/train_mean"] = tmean
            out[f"heldout/{name}/gap"] = tmean - hmean
            out[f"heldout/{name}/corr"] = stats.pearson(tr, ho) if len(tr) >= 2 else stats.NAN
        return out

    def _heldout_trends(self, heldout: HeldOut) -> dict[str, float]:
        out = {}
        for name in heldout:
            d = rules.divergence(
                self._points(f"heldout/{name}/train_mean"), self._points(f"heldout/{name}/mean")
            )
            out[f"heldout/{name}/slope"] = d["slope"]
            out[f"heldout/{name}/train_slope"] = d["train_slope"]
            out[f"heldout/{name}/trend_corr"] = d["trend_corr"]
        return out

    def _alert(self, alerts: list[Alert], alert: Alert) -> None:
        """Append `alert` unless the same rule and signal alerted within the cooldown."""
        key = f"{alert.rule}:{alert.signal}"
        last = self.last_alert.get(key)
        if last is not None and alert.step - last < self.config.cooldown:
            return
        self.last_alert[key] = alert.step
        alerts.append(alert)

    def _detect(self, step, sig, feats_P_G, flags_P_G) -> list[Alert]:
        cfg = self.config
        alerts: list[Alert] = []
        watched = set(cfg.signals)
        for key, value in sig.items():
            generic = _generic_signal(key)
            if generic not in watched or math.isnan(value):
                continue
            for kind in cfg.detectors:
                dkey = f"{kind}:{key}"
                det = self.detectors.get(dkey) or _detector(kind, generic, cfg)
                self.detectors[dkey] = det
                d = det.update(value)
                if d.fired:
                    rolls = example_rollouts(flags_P_G, feats_P_G, _EVIDENCE_FLAG.get(generic))
                    self._alert(
                        alerts,
                        Alert(
                            kind,
                            step,
                            key,
                            value,
                            d.threshold,
                            f"{key} = {value:.4g}: {kind} statistic {d.statistic:.2f} > "
                            f"{d.threshold:g} ({SIGNALS[generic]} is bad)",
                            rolls,
                        ),
                    )
        return alerts

    def _composite(self, step, heldout, feats_P_G, flags_P_G) -> list[Alert]:
        cfg = self.config
        alerts: list[Alert] = []
        if self.observed + 1 < cfg.min_steps:
            return alerts
        top = example_rollouts(flags_P_G, feats_P_G, None)
        for name in heldout:
            r = rules.train_up_heldout_flat(
                self._points(f"heldout/{name}/train_mean", cfg.window),
                self._points(f"heldout/{name}/mean", cfg.window),
                cfg.rise_min,
                cfg.heldout_flat_frac,
                cfg.min_steps,
            )
            if r.fired:
                self._alert(
                    alerts,
                    Alert(
                        "train_up_heldout_flat",
                        step,
                        f"heldout/{name}",
                        r.value,
                        r.threshold,
                        r.evidence,
                        top,
                    ),
                )
        if heldout and all(self._heldout_confirms(name) for name in heldout):
            return alerts  # rule 2 is moot while every held-out scorer rises with the reward
        for sig_name in cfg.exploit_signals:
            r = rules.reward_with_exploit(
                self._points("reward/mean", cfg.window),
                self._points(sig_name, cfg.window),
                sig_name,
                cfg.rise_min,
                cfg.exploit_corr_min,
                cfg.min_steps,
            )
            if r.fired:
                rolls = example_rollouts(flags_P_G, feats_P_G, _EVIDENCE_FLAG.get(sig_name))
                self._alert(
                    alerts,
                    Alert(
                        "reward_with_exploit",
                        step,
                        sig_name,
                        r.value,
                        r.threshold,
                        r.evidence,
                        rolls,
                    ),
                )
        return alerts

    def _heldout_confirms(self, name: str) -> bool:
        """Whether held-out scorer `name` rose with the train reward over the window (by more than
        `heldout_flat_frac` of the train reward's rise): the gain is real, not only the proxy's."""
        cfg = self.config
        steps, tr, ho = stats.aligned_pairs(
            self._points(f"heldout/{name}/train_mean", cfg.window),
            self._points(f"heldout/{name}/mean", cfg.window),
        )
        if len(tr) < cfg.min_steps:
            return False
        d_train = stats.change_over_window(list(zip(steps, tr)))
        d_held = stats.change_over_window(list(zip(steps, ho)))
        return d_train > 0 and d_held > cfg.heldout_flat_frac * d_train

    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The monitor's whole state as JSON-safe data (for the checkpoint)."""
        return {
            "version": _STATE_VERSION,
            "history": {k: [list(p) for p in v] for k, v in self.history.items()},
            "baselines": {k: list(v) for k, v in self.baselines.items()},
            "detectors": {k: d.to_dict() for k, d in self.detectors.items()},
            "last_alert": dict(self.last_alert),
            "observed": self.observed,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned (the config is not part of the state).

        Raises:
            ValueError: a state of another version or with an unknown detector kind.
        """
        if state.get("version") != _STATE_VERSION:
            raise ValueError(
                f"monitor state version {state.get('version')!r}; this burnish reads "
                f"{_STATE_VERSION}"
            )
        self.history = {k: [list(p) for p in v] for k, v in state["history"].items()}
        self.baselines = {k: list(v) for k, v in state["baselines"].items()}
        self.detectors = {k: detector_from_dict(d) for k, d in state["detectors"].items()}
        self.last_alert = {k: int(v) for k, v in state["last_alert"].items()}
        self.observed = int(state["observed"])
