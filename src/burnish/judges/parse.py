"""Parse and strictly validate judge answers. Pure functions over strings and dicts.

Rules (see judges_and_hacking.md §2.3, §2.9): `<think>` blocks are dropped (an unclosed one is
an error); the first balanced JSON object that has the expected key and passes validation is
taken, so prose and echoed format examples around it are skipped; every criterion or id must
appear exactly once, verdicts must be one of the allowed choices (exact match after trimming
whitespace), scores must be finite numbers in [0, 1]. Out-of-range values are errors, never clamped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from burnish.judges.rubric import Criterion

T = TypeVar("T")


class JudgeOutputError(ValueError):
    """A judge answer could not be parsed or failed validation; the message says why."""


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def strip_think(text: str) -> str:
    """Remove `<think>...</think>` blocks; text before a lone `</think>` is reasoning too."""
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        raise JudgeOutputError("unclosed <think> block: the answer was cut off while reasoning")
    return text


def json_objects(text: str, key: str) -> list[dict[str, Any]]:
    """Every balanced JSON object in `text` that has `key` at its top level, in order."""
    decoder = json.JSONDecoder()
    found = []
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            obj, end = None, pos + 1
        if isinstance(obj, dict) and key in obj:
            found.append(obj)
            pos = text.find("{", end)
        else:
            pos = text.find("{", pos + 1)
    return found


def first_valid(text: str, key: str, check: Callable[[dict[str, Any]], T]) -> T:
    """`check` applied to the first JSON object with `key` that passes it.

    Objects that fail (an echoed format example, a draft) are skipped; when none passes, the
    error of the first one is raised, as that is most likely the intended answer.
    """
    objects = json_objects(strip_think(text), key)
    if not objects:
        raise JudgeOutputError(f'no JSON object with a "{key}" key found in the answer')
    first_error: JudgeOutputError | None = None
    for obj in objects:
        try:
            return check(obj)
        except JudgeOutputError as e:
            first_error = first_error or e
    raise first_error  # type: ignore[misc]


@dataclass(frozen=True)
class RubricVerdicts:
    """A validated rubric answer."""

    verdicts: dict[str, str]
    reasons: dict[str, str]
    flags: dict[str, bool]


def validate_rubric_answer(text: str, criteria: Sequence[Criterion]) -> RubricVerdicts:
    """Parse and validate `{"verdicts": [{"name", "reason", "verdict"}], "flags": {...}}`."""
    return first_valid(text, "verdicts", lambda obj: _check_verdicts(obj, criteria))


def _check_verdicts(obj: dict[str, Any], criteria: Sequence[Criterion]) -> RubricVerdicts:
    items = obj["verdicts"]
    if not isinstance(items, list):
        raise JudgeOutputError(f'"verdicts" must be a list, got {type(items).__name__}')
    by_name = {c.name: c for c in criteria}
    verdicts: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise JudgeOutputError(f"verdicts[{i}] must be an object, got {item!r}")
        name, verdict, reason = item.get("name"), item.get("verdict"), item.get("reason", "")
        if name not in by_name:
            raise JudgeOutputError(
                f"verdicts[{i}]: unknown criterion {name!r}; expected one of {list(by_name)}"
            )
        if name in verdicts:
            raise JudgeOutputError(f"criterion {name!r} appears more than once")
        if not isinstance(verdict, str) or verdict.strip() not in by_name[name].choices:
            raise JudgeOutputError(
                f"criterion {name!r}: verdict {verdict!r} is not one of {list(by_name[name].choices)}"
            )
        if not isinstance(reason, str):
            raise JudgeOutputError(f"criterion {name!r}: reason must be a string, got {reason!r}")
        verdicts[name] = verdict.strip()
        reasons[name] = reason
    missing = [n for n in by_name if n not in verdicts]
    if missing:
        raise JudgeOutputError(f"missing verdicts for criteria {missing}")
    flags = obj.get("flags", {})
    if not isinstance(flags, Mapping) or not all(isinstance(v, bool) for v in flags.values()):
        raise JudgeOutputError(f'"flags" must be an object of booleans, got {flags!r}')
    return RubricVerdicts(verdicts, reasons, dict(flags))


@dataclass(frozen=True)
class GroupScores:
    """A validated group answer: a score and reason per candidate id."""

    scores: dict[str, float]
    reasons: dict[str, str]


def validate_group_answer(text: str, ids: Sequence[str]) -> GroupScores:
    """Parse and validate `{"scores": [{"id", "reason", "score"}]}` for exactly these ids."""
    return first_valid(text, "scores", lambda obj: _check_scores(obj, ids))


def _check_scores(obj: dict[str, Any], ids: Sequence[str]) -> GroupScores:
    items = obj["scores"]
    if not isinstance(items, list):
        raise JudgeOutputError(f'"scores" must be a list, got {type(items).__name__}')
    expected = set(ids)
    scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise JudgeOutputError(f"scores[{i}] must be an object, got {item!r}")
        cid, score, reason = item.get("id"), item.get("score"), item.get("reason", "")
        if cid not in expected:
            raise JudgeOutputError(
                f"scores[{i}]: unknown id {cid!r}; expected one of {sorted(expected)}"
            )
        if cid in scores:
            raise JudgeOutputError(f"id {cid!r} is scored more than once")
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise JudgeOutputError(f"id {cid!r}: score must be a number, got {score!r}")
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            raise JudgeOutputError(f"id {cid!r}: score {score!r} is outside [0, 1]")
        if not isinstance(reason, str):
            raise JudgeOutputError(f"id {cid!r}: reason must be a string, got {reason!r}")
        scores[cid] = float(score)
        reasons[cid] = reason
    missing = sorted(expected - set(scores))
    if missing:
        raise JudgeOutputError(f"missing scores for ids {missing}")
    return GroupScores(scores, reasons)
