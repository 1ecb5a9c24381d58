"""The scoring seam and the machinery every LLM judge shares.

`Scorer` (from `burnish.scoring`) is what the trainer calls: one call per group of trajectories of one task. LLM judges
also score plain candidate texts (`score_candidates`), which is what calibration and replay use.

A judge call goes: request -> strict validation -> on failure ONE repair request that quotes
the validation error -> on failure `Score(None)` with the error in `info`. A failed call
(429 / 5xx / timeout after the client's retries, or an unusable answer: a 4xx, a body that is
not a chat completion or is too large) also ends in `Score(None)`; the same unusable answer
`max_client_errors` times in a row raises `JudgeConfigurationError` naming the judge, and the run
stops. Nothing here ever turns a failure into 0 or into a reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from burnish.judges.cache import JudgeCache, cache_key
from burnish.judges.client import JudgeCallError, JudgeClient, JudgeConfigurationError
from burnish.judges.config import JudgeConfig
from burnish.judges.metrics import JudgeMetrics
from burnish.judges.parse import PARSER_VERSION, JudgeOutputError
from burnish.judges.prompts import load_template, render
from burnish.scoring import Scorer
from burnish.types import Score, Task

T = TypeVar("T")


@runtime_checkable
class TextScorer(Scorer, Protocol):
    """A scorer that can also score raw candidate texts (calibration, replay)."""

    async def score_candidates(self, task: Task, candidates: Sequence[str]) -> list[Score]: ...

    def metrics(self) -> dict[str, float]: ...

    def reset_metrics(self) -> None: ...


@dataclass(frozen=True)
class Exchange(Generic[T]):
    """The outcome of one judged request, repair included."""

    parsed: T | None
    error: str | None = None
    raw: tuple[str, ...] = ()
    """Every answer text received (the first, then the repair's)."""
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    repaired: bool = False

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
        }


@dataclass
class JudgeCore:
    """Client, counters and cache shared by one judge's calls."""

    config: JudgeConfig
    cache: JudgeCache | None = None
    metrics: JudgeMetrics = field(default_factory=JudgeMetrics)
    client: JudgeClient | None = None
    name: str = "judge"
    """The owning judge's name (named in configuration errors)."""

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = JudgeClient(self.config, self.metrics)
        else:
            self.client.metrics = self.metrics

    @property
    def cacheable(self) -> bool:
        return self.cache is not None and self.config.temperature == 0

    def key(self, **parts: Any) -> str:
        return cache_key(
            model=self.config.model,
            sampling=self.config.sampling,
            parser=PARSER_VERSION,
            **parts,
        )

    def cache_get(self, key: str) -> Any | None:
        if not self.cacheable:
            return None
        self.metrics.cache_lookups += 1
        value = self.cache.get(key)  # type: ignore[union-attr]
        if value is not None:
            self.metrics.cache_hits += 1
        return value

    def cache_put(self, key: str, value: Any) -> None:
        if self.cacheable:
            self.cache.put(key, value)  # type: ignore[union-attr]

    def record(self, scores: Sequence[Score]) -> list[Score]:
        self.metrics.scored += len(scores)
        self.metrics.unscorable += sum(s.value is None for s in scores)
        return list(scores)

    async def ask(
        self, messages: list[dict[str, str]], validate: Callable[[str], T], expected: str
    ) -> Exchange[T]:
        """Send `messages`, validate the answer, repair once, and report what happened."""
        raw: list[str] = []
        usage = [0, 0, 0.0]
        model = self.config.model
        error = ""
        for attempt in range(2):
            try:
                result = await self.client.complete(messages)  # type: ignore[union-attr]
            except JudgeCallError as e:
                error = f"judge call failed: {e}"
                break
            except JudgeConfigurationError as e:
                raise JudgeConfigurationError(f"judge {self.name!r}: {e}") from None
            raw.append(result.text)
            model = result.model
            usage = [usage[0] + result.prompt_tokens, usage[1] + result.completion_tokens,
                     usage[2] + result.cost_usd]  # fmt: skip
            try:
                parsed = validate(result.text)
            except JudgeOutputError as e:
                error = f"invalid judge answer: {e}"
                if attempt == 0:
                    self.metrics.repairs += 1
                    repair = render(
                        load_template("repair"), {"error": str(e), "expected": expected}
                    )
                    messages = [*messages, {"role": "assistant", "content": result.text},
                                {"role": "user", "content": repair}]  # fmt: skip
                continue
            return Exchange(parsed, None, tuple(raw), model, usage[0], usage[1], usage[2],
                            repaired=attempt > 0)  # fmt: skip
        return Exchange(None, error, tuple(raw), model, usage[0], usage[1], usage[2])


def unscorable(judge: str, error: str, **info: Any) -> Score:
    """A `Score(None)` carrying the reason (never a 0)."""
    return Score(None, {}, {"judge": judge, "error": error, **info})
