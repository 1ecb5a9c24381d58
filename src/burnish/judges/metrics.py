"""Counters a judge keeps between `reset_metrics()` calls (the trainer resets them each step)."""

from __future__ import annotations

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
        """`judge/*` metrics; `judge/cost_usd` only when a price is configured."""
        out = {
            "judge/calls": float(self.calls),
            "judge/retries": float(self.retries),
            "judge/failed_calls": float(self.failed_calls),
            "judge/client_errors": float(self.client_errors),
            "judge/repairs": float(self.repairs),
            "judge/tokens": float(self.prompt_tokens + self.completion_tokens),
            "judge/prompt_tokens": float(self.prompt_tokens),
            "judge/completion_tokens": float(self.completion_tokens),
            "judge/unscorable_rate": self.unscorable / self.scored if self.scored else 0.0,
            "judge/cache_hit_rate": (
                self.cache_hits / self.cache_lookups if self.cache_lookups else 0.0
            ),
        }
        if priced:
            out["judge/cost_usd"] = self.cost_usd
        return out
