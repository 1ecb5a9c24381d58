"""Counters a judge keeps between `reset_metrics()` calls (the trainer resets them each step)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class JudgeMetrics:
    """Mutable counters; `as_dict` turns them into `judge/*` metrics."""

    calls: int = 0
    """Judge requests that returned an answer (retries of failed requests are not counted)."""
    retries: int = 0
    """Requests retried after 408 / 429 / 5xx / timeout / connection errors."""
    failed_calls: int = 0
    """Requests that got no usable answer: transient failures past the retries, and unusable
    answers (`client_errors`)."""
    client_errors: int = 0
    """Requests answered with an HTTP 4xx other than 408 / 429, a body that is not a chat
    completion, or one past `max_response_bytes` (not retried; part of `failed_calls`)."""
    repairs: int = 0
    """Repair requests sent after an answer failed validation."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cache_lookups: int = 0
    cache_hits: int = 0
    scored: int = 0
    """Rollouts for which a score (possibly None) was produced."""
    unscorable: int = 0
    """Rollouts whose score is None."""

    def reset(self) -> None:
        """Zero every counter (in place: the client holds the same object)."""
        for name, f in self.__dataclass_fields__.items():
            setattr(self, name, f.default)

    def as_dict(self, priced: bool) -> dict[str, float]:
        """`judge/*` metrics; `judge/cost_usd` only when a price is configured.

        Health at a glance: `judge/failed_calls` (of them `judge/client_errors`) against
        `judge/calls`, and `judge/unscorable` of `judge/scored` rollouts (`judge/unscorable_rate`).
        """
        out = {
            "judge/calls": float(self.calls),
            "judge/retries": float(self.retries),
            "judge/failed_calls": float(self.failed_calls),
            "judge/client_errors": float(self.client_errors),
            "judge/repairs": float(self.repairs),
            "judge/tokens": float(self.prompt_tokens + self.completion_tokens),
            "judge/prompt_tokens": float(self.prompt_tokens),
            "judge/completion_tokens": float(self.completion_tokens),
            "judge/scored": float(self.scored),
            "judge/unscorable": float(self.unscorable),
            "judge/unscorable_rate": self.unscorable / self.scored if self.scored else 0.0,
            "judge/cache_hit_rate": (
                self.cache_hits / self.cache_lookups if self.cache_lookups else 0.0
            ),
        }
        if priced:
            out["judge/cost_usd"] = self.cost_usd
        return out


HEALTH_KEYS = ("judge/calls", "judge/failed_calls", "judge/scored", "judge/unscorable")
"""The counters `health_summary` reads (also under `<key>/<judge name>` as the trainer logs them)."""


def health_summary(metrics: Mapping[str, float]) -> str:
    """One short line on judge health from a step's metrics, e.g. for a progress bar.

    Reads `judge/failed_calls`, `judge/calls`, `judge/unscorable` and `judge/scored`: plain (one
    judge's `metrics()`), suffixed with `/<judge name>` (the trainer's step metrics) or prefixed
    with `<member>/` (an ensemble's), and writes "<name> failed F/N calls, unscorable U/S" for
    each judge that made or failed a call; "" when there is none.
    """
    by_judge: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        for base in HEALTH_KEYS:
            head, sep, tail = f"/{key}/".partition(f"/{base}/")
            if sep:
                name = "/".join(p for p in (head.strip("/"), tail.strip("/")) if p) or "judge"
                by_judge.setdefault(name, {})[base] = float(value)
    parts = []
    for name, m in by_judge.items():
        if "judge/failed_calls" not in m:  # e.g. an ensemble's summed call count
            continue
        failed, calls = m["judge/failed_calls"], m.get("judge/calls", 0.0)
        if failed + calls == 0:
            continue
        parts.append(
            f"{name} failed {failed:.0f}/{failed + calls:.0f} calls, unscorable "
            f"{m.get('judge/unscorable', 0.0):.0f}/{m.get('judge/scored', 0.0):.0f}"
        )
    return "; ".join(parts)
