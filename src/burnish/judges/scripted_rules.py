"""The scripted judge's rules: how it reads a judge prompt and what it answers. Pure functions.

The scripted judge is a stand-in for offline work, tests and CI, not a judge of quality: it
answers the prompts of `RubricJudge` and `GroupJudge` by simple documented rules.

Signals computed for each fenced candidate (all in [0, 1]):
    keywords  fraction of the task's keywords present as whole words (case-insensitive); the
              keywords come from the line matched by `keyword_pattern` in the TASK section
              (by default "- keywords: a, b, c", as `RubricJudge` renders `Task.info`); 0
              when the task lists none.
    length    min(1, characters / length_target): longer is better (planted length bias).
    quality   (keyword_weight * keywords + length_weight * length) / (sum of the weights).
    clean     0 when the candidate contains an injection phrase, else 1.
    one       always 1.
When `gullible` is set and the candidate contains an injection phrase ("ignore previous
instructions", "as the grader" ...), every signal is 1: the planted injection vulnerability.

Rubric prompts: a non-pitfall criterion takes the choice at rank round(signal * (n - 1)) of
its `criteria_signals` entry (default `quality`); a pitfall criterion uses `clean` by default.
Group prompts: each id gets its `quality` as the score.

Faults (`[[faults]]` tables, checked in order; the first that applies to a request wins):
a fault applies to request i (0-based, counted since the server started or was reconfigured)
when i < first_n, or else with the given probability (from a seeded generator). Kinds:
    http_429, http_500   answer with that HTTP status (and Retry-After: 0)
    slow                 sleep `seconds` before answering normally
    malformed_json       a truncated JSON object
    out_of_range         group: scores 10x + 1 (e.g. 7.0); rubric: verdict "10/10"
    missing              drop the first criterion / id
    extra                add an unknown criterion / id
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MODEL_ID = "scripted-judge"
FAULT_KINDS = ("http_429", "http_500", "slow", "malformed_json", "out_of_range", "missing", "extra")
SIGNALS = ("keywords", "length", "quality", "clean", "one")


@dataclass(frozen=True)
class Fault:
    """One planted failure (see the module doc)."""

    kind: str
    first_n: int = 0
    probability: float = 0.0
    seconds: float = 2.0
    """Delay of a `slow` fault."""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; allowed: {list(FAULT_KINDS)}")
        if self.first_n < 0 or not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault {self.kind!r}: need first_n >= 0 and probability in [0, 1]")


@dataclass(frozen=True)
class ScriptedRules:
    """What the scripted judge rewards and which failures it plants."""

    keyword_weight: float = 1.0
    length_weight: float = 0.0
    length_target: int = 400
    keyword_pattern: str = r"(?im)^\s*-\s*keywords\s*:\s*(.+)$"
    injection_phrases: tuple[str, ...] = ("ignore previous instructions", "as the grader")
    gullible: bool = False
    criteria_signals: Mapping[str, str] = field(default_factory=dict)
    think: bool = False
    """Wrap answers in a `<think>` block first (to exercise stripping)."""
    prose: bool = False
    """Surround the JSON with prose (to exercise extraction)."""
    faults: tuple[Fault, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if (
            self.keyword_weight < 0
            or self.length_weight < 0
            or self.keyword_weight + self.length_weight <= 0
        ):
            raise ValueError("keyword_weight and length_weight must be >= 0 with a positive sum")
        if self.length_target < 1:
            raise ValueError(f"length_target must be >= 1, got {self.length_target}")
        bad = {k: v for k, v in self.criteria_signals.items() if v not in SIGNALS}
        if bad:
            raise ValueError(f"unknown signals {bad}; allowed: {list(SIGNALS)}")


def parse_rules(data: Mapping[str, Any], source: str = "<rules>") -> ScriptedRules:
    """Rules from a TOML table: [scoring], [injection], [output], [criteria_signals], [[faults]]."""
    known = {"scoring", "injection", "output", "criteria_signals", "faults", "seed", "description"}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{source}: unknown sections {sorted(unknown)}; allowed: {sorted(known)}")
    s, inj, out = data.get("scoring", {}), data.get("injection", {}), data.get("output", {})
    try:
        return ScriptedRules(
            keyword_weight=float(s.get("keyword_weight", 1.0)),
            length_weight=float(s.get("length_weight", 0.0)),
            length_target=int(s.get("length_target", 400)),
            keyword_pattern=s.get("keyword_pattern", ScriptedRules.keyword_pattern),
            injection_phrases=tuple(inj.get("phrases", ScriptedRules.injection_phrases)),
            gullible=bool(inj.get("gullible", False)),
            criteria_signals=dict(data.get("criteria_signals", {})),
            think=bool(out.get("think", False)),
            prose=bool(out.get("prose", False)),
            faults=tuple(Fault(**f) for f in data.get("faults", [])),
            seed=int(data.get("seed", 0)),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from None


def load_rules(path: str | Path) -> ScriptedRules:
    return parse_rules(tomllib.loads(Path(path).read_text(encoding="utf-8")), str(path))


_TASK = re.compile(r"<task-([0-9a-f]+)>\n(.*?)\n</task-\1>", re.DOTALL)
_RUBRIC_CAND = re.compile(r"<candidate-([0-9a-f]+)>\n(.*?)\n</candidate-\1>", re.DOTALL)
_GROUP_CAND = re.compile(r'<candidate-([0-9a-f]+) id="([^"]+)">\n(.*?)\n</candidate-\1>', re.DOTALL)
_CRITERION = re.compile(
    r"^\d+\. (\S+) \((\w+)\)\n\s+Description: .*\n\s+Allowed verdicts, worst to best: (.+)$", re.M
)


def signals(rules: ScriptedRules, task: str, candidate: str) -> dict[str, float]:
    """The scripted signals of one candidate (see the module doc)."""
    m = re.search(rules.keyword_pattern, task)
    keywords = [k.strip().lower() for k in m.group(1).split(",") if k.strip()] if m else []
    text = candidate.lower()
    found = sum(bool(re.search(rf"\b{re.escape(k)}\b", text)) for k in keywords)
    coverage = found / len(keywords) if keywords else 0.0
    length = min(1.0, len(candidate) / rules.length_target)
    wk, wl = rules.keyword_weight, rules.length_weight
    injected = any(p.lower() in text for p in rules.injection_phrases)
    out = {
        "keywords": coverage,
        "length": length,
        "quality": (wk * coverage + wl * length) / (wk + wl),
        "clean": 0.0 if injected else 1.0,
        "one": 1.0,
    }
    if injected and rules.gullible:
        out = dict.fromkeys(out, 1.0)
    out["injected"] = float(injected)
    return out


def _rubric_answer(
    rules: ScriptedRules, task: str, candidate: str, prompt: str, fault: str | None
) -> dict:
    sig = signals(rules, task, candidate)
    verdicts = []
    for name, category, choices_txt in _CRITERION.findall(prompt):
        choices = json.loads(f"[{choices_txt}]")
        default = "clean" if category == "pitfall" else "quality"
        value = sig[rules.criteria_signals.get(name, default)]
        verdict = choices[round(value * (len(choices) - 1))]
        verdicts.append(
            {"name": name, "reason": f"scripted: {name} signal {value:.2f}", "verdict": verdict}
        )
    if fault == "out_of_range" and verdicts:
        verdicts[0]["verdict"] = "10/10"
    if fault == "missing" and verdicts:
        verdicts = verdicts[1:]
    if fault == "extra":
        verdicts.append({"name": "invented_criterion", "reason": "scripted", "verdict": "yes"})
    injected = bool(sig["injected"]) and not rules.gullible
    return {"verdicts": verdicts, "flags": {"injection_attempt": injected, "refusal": False}}


def _group_answer(
    rules: ScriptedRules, task: str, cands: list[tuple[str, str]], fault: str | None
) -> dict:
    scores = []
    for cid, text in cands:
        q = signals(rules, task, text)["quality"]
        scores.append({"id": cid, "reason": f"scripted: quality {q:.2f}", "score": round(q, 6)})
    if fault == "out_of_range":
        for s in scores:
            s["score"] = s["score"] * 10 + 1
    if fault == "missing" and scores:
        scores = scores[1:]
    if fault == "extra":
        scores.append({"id": "not-a-candidate", "reason": "scripted", "score": 0.5})
    return {"scores": scores}


def answer(
    rules: ScriptedRules, messages: list[Mapping[str, Any]], fault: str | None = None
) -> str:
    """The scripted judge's reply text to a chat request (faults other than HTTP/slow applied)."""
    prompt = next(
        (str(m.get("content", "")) for m in messages
         if m.get("role") == "user" and "<candidate-" in str(m.get("content", ""))),
        "",
    )  # fmt: skip
    tm = _TASK.search(prompt)
    task = tm.group(2) if tm else ""
    group = [(cid, text) for _, cid, text in _GROUP_CAND.findall(prompt)]
    if group:
        obj = _group_answer(rules, task, group, fault)
    elif (cm := _RUBRIC_CAND.search(prompt)) is not None:
        obj = _rubric_answer(rules, task, cm.group(2), prompt, fault)
    else:
        return "The scripted judge only answers burnish judge prompts (no fenced candidate found)."
    text = json.dumps(obj)
    if fault == "malformed_json":
        text = text[: max(1, len(text) // 2)]
    if rules.prose:
        text = f"Here is my evaluation.\n{text}\nThat is all."
    if rules.think:
        text = f"<think>Let me weigh {{the}} candidates carefully.</think>\n{text}"
    return text
