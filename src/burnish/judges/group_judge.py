"""Relative group judge (ART RULER-style): all rollouts of one task in one call.

The judge sees the task (and reference, and a rubric) once, then every distinct candidate,
and scores each in [0, 1] relative to the others. Departures from RULER as read
(`art/rewards/ruler.py`): candidates are shuffled per call and labelled with random opaque
ids instead of "1".."N" in input order (position bias, docs/judges_and_hacking.md §2.8); scores are
range-checked and never clamped; a bad answer gets one repair request and then every rollout
of the group is `Score(None)`. Identical candidates are sent once and share a score.

Scores are not comparable across groups: use them for within-group advantages only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from burnish.judges.cache import JudgeCache
from burnish.judges.client import JudgeClient
from burnish.judges.config import JudgeConfig
from burnish.judges.core import JudgeCore, unscorable
from burnish.judges.parse import validate_group_answer
from burnish.judges.prompts import (
    candidate_view,
    criteria_text,
    fence,
    judge_messages,
    load_template,
    new_nonce,
    reference_text,
    task_text,
    template_version,
)
from burnish.judges.rubric import Rubric
from burnish.types import Score, Task, Trajectory

GROUP_TEMPLATES = ("group_system", "group_user", "group_default_rubric", "repair")


class GroupJudge:
    """Scores a group of rollouts of one task relative to each other.

    Args:
        config: judge endpoint and limits.
        rubric: optional rubric whose criteria are shown as the grading guide (the default is
            `templates/group_default_rubric.txt`).
        cache: optional cache (temperature 0 only); the key covers the set of distinct
            candidates, so a permuted group hits the same entry.
        name: scorer name.
        view: what the judge sees of a trajectory ("completion" or "full_trace").
        task_info: `Task.info` keys shown in the TASK section (default: the rubric's).
        seed: seed for the shuffle and the ids (None = random).
        client: an existing client to share.
    """

    def __init__(
        self,
        config: JudgeConfig,
        *,
        rubric: Rubric | None = None,
        cache: JudgeCache | None = None,
        name: str = "group_judge",
        view: str = "completion",
        task_info: Sequence[str] | None = None,
        seed: int | None = None,
        client: JudgeClient | None = None,
    ) -> None:
        self.rubric = rubric
        self.name = name
        self.core = JudgeCore(config, cache, client=client, name=name)
        self._view = candidate_view(view)
        self._rng = random.Random(seed)
        self.prompt_version = template_version(GROUP_TEMPLATES)
        self.rubric_version = rubric.version if rubric is not None else "default"
        if task_info is None:
            task_info = rubric.task_info if rubric is not None else ()
        self._info_keys = tuple(task_info)

    def metrics(self) -> dict[str, float]:
        return self.core.metrics.as_dict(self.core.config.priced)

    def reset_metrics(self) -> None:
        self.core.metrics.reset()

    def _rubric_text(self) -> str:
        if self.rubric is None:
            return load_template("group_default_rubric").strip()
        head = f"{self.rubric.description}\n" if self.rubric.description else ""
        return head + criteria_text(self.rubric.criteria)

    def assign_ids(self, candidates: Sequence[str]) -> tuple[list[str], list[str]]:
        """Shuffle distinct candidates and give each a random opaque id: (order, ids)."""
        order = list(candidates)
        self._rng.shuffle(order)
        ids: list[str] = []
        while len(ids) < len(order):
            cid = f"{self._rng.getrandbits(32):08x}"
            if cid not in ids:
                ids.append(cid)
        return order, ids

    def build_messages(
        self, task: Task, order: Sequence[str], ids: Sequence[str]
    ) -> list[dict[str, str]]:
        """System and user messages for candidates `order` labelled `ids`."""
        task_txt = task_text(task, self._info_keys)
        ref = reference_text(task)
        nonce = new_nonce([task_txt, ref or "", *order])
        blocks = [
            fence("candidate", text, nonce, f'id="{cid}"')
            for cid, text in zip(ids, order, strict=True)
        ]
        return judge_messages(
            "group",
            nonce,
            task_txt,
            ref,
            rubric=self._rubric_text(),
            count=str(len(order)),
            candidates="\n\n".join(blocks),
        )

    async def score_group(self, task: Task, trajectories: Sequence[Trajectory]) -> list[Score]:
        return await self.score_candidates(task, [self._view(t) for t in trajectories])

    async def score_candidates(self, task: Task, candidates: Sequence[str]) -> list[Score]:
        """One relative score per candidate; all None when the judge answer is unusable."""
        unique = list(dict.fromkeys(candidates))
        key = self.core.key(
            kind="group",
            prompt_version=self.prompt_version,
            rubric_version=self.rubric_version,
            task=task_text(task, self._info_keys),
            reference=reference_text(task),
            candidates=sorted(unique),
        )
        cached = self.core.cache_get(key)
        if cached is not None:
            by_text = {text: (score, reason) for text, score, reason in cached["scores"]}
            return self.core.record(
                [self._score(by_text, c, len(unique), {}, True) for c in candidates]
            )
        order, ids = self.assign_ids(unique)
        ex = await self.core.ask(
            self.build_messages(task, order, ids),
            lambda text: validate_group_answer(text, ids, quoted=order),
            expected=f"the ids {ids}",
        )
        if ex.parsed is None:
            bad = unscorable(
                self.name, ex.error or "", raw=list(ex.raw), usage=ex.usage(), model=ex.model
            )
            return self.core.record([bad] * len(candidates))
        by_text = {
            text: (ex.parsed.scores[cid], ex.parsed.reasons[cid])
            for cid, text in zip(ids, order, strict=True)
        }
        self.core.cache_put(key, {"scores": [[t, s, r] for t, (s, r) in by_text.items()]})
        meta = {"model": ex.model, "raw": list(ex.raw), "usage": ex.usage(), "repaired": ex.repaired,
                "ids": dict(zip(order, ids, strict=True))}  # fmt: skip
        return self.core.record(
            [self._score(by_text, c, len(unique), meta, False) for c in candidates]
        )

    def _score(
        self, by_text: dict[str, tuple[float, str]], text: str, n: int, meta: dict, cached: bool
    ) -> Score:
        score, reason = by_text[text]
        info = {
            "judge": self.name,
            "prompt_version": self.prompt_version,
            "rubric_version": self.rubric_version,
            "reason": reason,
            "group_distinct": n,
            "cached": cached,
            "model": meta.get("model", self.core.config.model),
            "repaired": meta.get("repaired", False),
        }
        if meta:
            info["id"] = meta["ids"][text]
            info["raw"] = meta["raw"]
        return Score(score, {"judge/group_score": score}, info)
