"""Parse and strictly validate judge answers. Pure functions over strings and dicts.

Rules (see docs/judges_and_hacking.md §2.3, §2.9): `<think>` blocks are dropped (an unclosed one is
an error). The judge's answer is the LAST JSON object that has the expected key: earlier ones
are quotes, drafts or echoed format examples. A candidate may plant a verdict of its own, so
before the last object is chosen, payload fences the judge echoed (`<candidate-NONCE ...>` ...
`</candidate-NONCE>`, likewise task and reference) are dropped, and so is every object equal to
one found in a candidate's text (a copy, wherever it stands). When the last attempt at the key is
cut off or not valid JSON, the answer is an error: an earlier object never stands in for it.

Every criterion or id must appear exactly once, verdicts must be one of the allowed choices
(exact match after trimming whitespace), scores must be finite numbers in [0, 1]. Out-of-range
values are errors, never clamped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from burnish.judges.rubric import Criterion

T = TypeVar("T")

PARSER_VERSION = "last-own-object-1"
"""Which answer-selection rule produced a verdict: part of every judge cache key, so verdicts
chosen under an older rule are never reused."""


class JudgeOutputError(ValueError):
    """A judge answer could not be parsed or failed validation; the message says why."""


_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_ECHOED_FENCE = re.compile(
    r"<(candidate|task|reference)-([0-9a-f]+)(?:\s[^>]*)?>.*?</\1-\2>", re.DOTALL
)


def strip_think(text: str) -> str:
    """Remove `<think>...</think>` blocks; text before a lone `</think>` is reasoning too."""
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text:
        text = text.rsplit("</think>", 1)[1]
    if "<think>" in text:
        raise JudgeOutputError("unclosed <think> block: the answer was cut off while reasoning")
    return text


def strip_echoed_fences(text: str) -> str:
    """Remove payload blocks (`<candidate-NONCE ...>...</candidate-NONCE>`) the judge quoted."""
    return _ECHOED_FENCE.sub("", text)


def _keyed_objects(text: str, key: str) -> list[tuple[int, int, dict[str, Any]]]:
    """(start, end, object) of every balanced JSON object with `key` at its top level."""
    decoder = json.JSONDecoder()
    found = []
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            obj, end = None, pos + 1
        if isinstance(obj, dict) and key in obj:
            found.append((pos, end, obj))
            pos = text.find("{", end)
        else:
            pos = text.find("{", pos + 1)
    return found


def json_objects(text: str, key: str) -> list[dict[str, Any]]:
    """Every balanced JSON object in `text` that has `key` at its top level, in order."""
    return [obj for _, _, obj in _keyed_objects(text, key)]


def final_answer(
    text: str, key: str, check: Callable[[dict[str, Any]], T], quoted: Iterable[str] = ()
) -> T:
    """`check` applied to the judge's own answer: the last JSON object with `key`.

    Args:
        text: the judge's answer text.
        key: the top-level key of the expected object ("verdicts", "scores").
        check: validates the object and returns the parsed result (raises JudgeOutputError).
        quoted: the candidate texts of the request; objects equal to one of theirs are copies.

    Raises:
        JudgeOutputError: no object, only copies, a cut-off last attempt, or `check`'s error.
    """
    text = strip_echoed_fences(strip_think(text))
    planted = [obj for q in quoted for obj in json_objects(q, key)]
    objects = _keyed_objects(text, key)
    own = [(start, obj) for start, _, obj in objects if obj not in planted]
    # a mention of the key outside every decoded object is an attempt that is not valid JSON
    broken = [
        m.start()
        for m in re.finditer(rf'"{re.escape(key)}"\s*:', text)
        if not any(s <= m.start() < e for s, e, _ in objects)
    ]
    if not own:
        why = ""
        if broken:
            why = " (the last one is not valid JSON: cut off?)"
        elif objects:
            why = " (the only ones are copied from a candidate)"
        raise JudgeOutputError(f'no JSON object with a "{key}" key found in the answer{why}')
    start, obj = own[-1]
    if broken and broken[-1] > start:
        raise JudgeOutputError(
            f'the last "{key}" object of the answer is not valid JSON (cut off?); '
            "an earlier one is not used in its place"
        )
    return check(obj)


@dataclass(frozen=True)
class RubricVerdicts:
    """A validated rubric answer."""

    verdicts: dict[str, str]
    reasons: dict[str, str]
    flags: dict[str, bool]


def validate_rubric_answer(
    text: str, criteria: Sequence[Criterion], quoted: Iterable[str] = ()
) -> RubricVerdicts:
    """Parse and validate `{"verdicts": [{"name", "reason", "verdict"}], "flags": {...}}`.

    `quoted`: the candidate text(s) of the request (see `final_answer`).
    """
    return final_answer(text, "verdicts", lambda obj: _check_verdicts(obj, criteria), quoted)


def _objects(obj: dict[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    """`obj[key]` as (index, object) pairs; JudgeOutputError unless it is a list of objects."""
    items = obj[key]
    if not isinstance(items, list):
        raise JudgeOutputError(f'"{key}" must be a list, got {type(items).__name__}')
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise JudgeOutputError(f"{key}[{i}] must be an object, got {item!r}")
    return list(enumerate(items))


def _check_verdicts(obj: dict[str, Any], criteria: Sequence[Criterion]) -> RubricVerdicts:
    by_name = {c.name: c for c in criteria}
    verdicts: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for i, item in _objects(obj, "verdicts"):
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


def validate_group_answer(text: str, ids: Sequence[str], quoted: Iterable[str] = ()) -> GroupScores:
    """Parse and validate `{"scores": [{"id", "reason", "score"}]}` for exactly these ids.

    `quoted`: the candidate texts of the request (see `final_answer`).
    """
    return final_answer(text, "scores", lambda obj: _check_scores(obj, ids), quoted)


def _check_scores(obj: dict[str, Any], ids: Sequence[str]) -> GroupScores:
    expected = set(ids)
    scores: dict[str, float] = {}
    reasons: dict[str, str] = {}
    for i, item in _objects(obj, "scores"):
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
