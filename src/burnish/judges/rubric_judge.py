"""Absolute rubric judge: one call per rollout with all criteria (RaR "explicit" aggregation).

The judge gives, for each criterion, a one-sentence reason and then a verdict from the
criterion's choices; the reward is the rubric's weighted aggregation of the verdict ranks
(`burnish.judges.rubric`). Departures from verifiers' `RubricJudge`: all criteria always go in
one call (no `max_criteria` batching), criterion order is shuffled per call (fixed order is a
bias source), and identical candidates within a group are judged once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from burnish.judges.cache import JudgeCache
from burnish.judges.client import JudgeClient
from burnish.judges.config import JudgeConfig
from burnish.judges.core import JudgeCore, unscorable
from burnish.judges.parse import RubricVerdicts, validate_rubric_answer
from burnish.judges.prompts import (
    candidate_view,
    criteria_text,
    fence,
    judge_messages,
    new_nonce,
    reference_text,
    task_text,
    template_version,
)
from burnish.judges.rubric import Rubric
from burnish.types import Score, Task, Trajectory

RUBRIC_TEMPLATES = ("rubric_system", "rubric_user", "repair")


class RubricJudge:
    """Scores each rollout against every criterion of a rubric.

    Args:
        rubric: the validated rubric.
        config: judge endpoint and limits.
        cache: optional verdict cache (used only at temperature 0).
        name: scorer name (metric and component prefix in ensembles).
        view: what the judge sees of a trajectory ("completion" or "full_trace").
        shuffle_criteria: present criteria in a random order per call.
        seed: seed of the criterion-order shuffle (None = random).
        client: an existing client (shares its connection pool and limits).
    """

    def __init__(
        self,
        rubric: Rubric,
        config: JudgeConfig,
        *,
        cache: JudgeCache | None = None,
        name: str = "rubric_judge",
        view: str = "completion",
        shuffle_criteria: bool = True,
        seed: int | None = None,
        client: JudgeClient | None = None,
    ) -> None:
        self.rubric = rubric
        self.name = name
        self.core = JudgeCore(config, cache, client=client, name=name)
        self._view = candidate_view(view)
        self._shuffle = shuffle_criteria
        self._rng = random.Random(seed)
        self.prompt_version = template_version(RUBRIC_TEMPLATES)

    def metrics(self) -> dict[str, float]:
        return self.core.metrics.as_dict(self.core.config.priced)

    def reset_metrics(self) -> None:
        self.core.metrics.reset()

    def build_messages(self, task: Task, candidate: str) -> list[dict[str, str]]:
        """The system and user messages of one judge request."""
        task_txt = task_text(task, self.rubric.task_info)
        ref = reference_text(task)
        nonce = new_nonce([task_txt, ref or "", candidate])
        criteria = list(self.rubric.criteria)
        if self._shuffle:
            self._rng.shuffle(criteria)
        return judge_messages(
            "rubric",
            nonce,
            task_txt,
            ref,
            criteria=criteria_text(criteria),
            candidate=fence("candidate", candidate, nonce),
        )

    async def score_group(self, task: Task, trajectories: Sequence[Trajectory]) -> list[Score]:
        return await self.score_candidates(task, [self._view(t) for t in trajectories])

    async def score_candidates(self, task: Task, candidates: Sequence[str]) -> list[Score]:
        """One score per candidate text; identical texts are judged once."""
        unique = list(dict.fromkeys(candidates))
        results = await asyncio.gather(*(self._score_one(task, c) for c in unique))
        by_text = dict(zip(unique, results, strict=True))
        return self.core.record([by_text[c] for c in candidates])

    def _key(self, task: Task, candidate: str) -> str:
        return self.core.key(
            kind="rubric",
            prompt_version=self.prompt_version,
            rubric_version=self.rubric.version,
            task=task_text(task, self.rubric.task_info),
            reference=reference_text(task),
            candidate=candidate,
        )

    async def _score_one(self, task: Task, candidate: str) -> Score:
        key = self._key(task, candidate)
        cached = self.core.cache_get(key)
        if cached is not None:
            return self._score(cached, cached=True)
        names = [c.name for c in self.rubric.criteria]
        ex = await self.core.ask(
            self.build_messages(task, candidate),
            lambda text: validate_rubric_answer(text, self.rubric.criteria, quoted=[candidate]),
            expected=f"the criteria {names}",
        )
        if ex.parsed is None:
            return unscorable(self.name, ex.error or "", raw=list(ex.raw), usage=ex.usage(),
                              model=ex.model, rubric_version=self.rubric.version)  # fmt: skip
        result = _result(ex.parsed, ex.model, list(ex.raw), ex.usage(), ex.repaired)
        self.core.cache_put(key, result)
        return self._score(result, cached=False)

    def _score(self, result: dict[str, Any], cached: bool) -> Score:
        value, per_criterion = self.rubric.aggregate(result["verdicts"])
        info = {
            "judge": self.name,
            "model": result["model"],
            "prompt_version": self.prompt_version,
            "rubric_version": self.rubric.version,
            "verdicts": {
                n: {"verdict": v, "reason": result["reasons"].get(n, "")}
                for n, v in result["verdicts"].items()
            },
            "flags": result["flags"],
            "raw": result["raw"],
            "usage": result["usage"] if not cached else {},
            "repaired": result["repaired"],
            "cached": cached,
        }
        return Score(value, {f"judge/{n}": v for n, v in per_criterion.items()}, info)


def _result(
    parsed: RubricVerdicts, model: str, raw: list[str], usage: dict, repaired: bool
) -> dict[str, Any]:
    return {
        "verdicts": parsed.verdicts,
        "reasons": parsed.reasons,
        "flags": parsed.flags,
        "model": model,
        "raw": raw,
        "usage": usage,
        "repaired": repaired,
    }
