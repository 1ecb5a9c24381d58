"""The judge kinds a run config can name: `JUDGE_KINDS` is the only list of them.

Each kind is one builder from a `JudgeSpec` (what a `[[judges]]` entry resolves to: endpoint,
rubric, cache, view and, for ensembles, the already-built members) to a `Scorer`. Adding a kind
is one entry here; the config accepts exactly the names of this table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from burnish.judges.cache import JudgeCache
from burnish.judges.config import JudgeConfig
from burnish.judges.core import Scorer
from burnish.judges.ensemble import EnsembleJudge
from burnish.judges.group_judge import GroupJudge
from burnish.judges.rubric import Rubric
from burnish.judges.rubric_judge import RubricJudge


@dataclass(frozen=True)
class JudgeSpec:
    """Everything a judge builder needs, resolved from one `[[judges]]` entry."""

    name: str
    kind: str
    config: JudgeConfig | None = None
    """The endpoint (None for an ensemble, whose members have their own)."""
    rubric: Rubric | None = None
    cache: JudgeCache | None = None
    view: str = "completion"
    members: Sequence[Scorer] = field(default_factory=tuple)
    """Ensemble members, built from the entry's `members`."""
    aggregate: str = "mean"
    lam: float = 1.0
    min_members: int | None = None
    seed: int = 0


def _needs(spec: JudgeSpec, what: str) -> None:
    if getattr(spec, what) in (None, ()):
        hint = {
            "rubric": "`rubric` (a TOML path or built-in name)",
            "config": "`base_url` and `model`",
            "members": "`members` (a list of judge entries)",
        }[what]
        article = "an" if spec.kind[:1] in "aeiou" else "a"
        raise ValueError(f"judge {spec.name!r}: {article} {spec.kind} judge needs {hint}")


def _rubric(spec: JudgeSpec) -> Scorer:
    _needs(spec, "rubric")
    return RubricJudge(
        spec.rubric, spec.config, cache=spec.cache, name=spec.name, view=spec.view, seed=spec.seed
    )


def _group(spec: JudgeSpec) -> Scorer:
    return GroupJudge(
        spec.config,
        rubric=spec.rubric,
        cache=spec.cache,
        name=spec.name,
        view=spec.view,
        seed=spec.seed,
    )


def _ensemble(spec: JudgeSpec) -> Scorer:
    _needs(spec, "members")
    return EnsembleJudge(
        spec.members, spec.aggregate, lam=spec.lam, min_members=spec.min_members, name=spec.name
    )


JUDGE_KINDS: dict[str, Callable[[JudgeSpec], Scorer]] = {
    "rubric": _rubric,
    "group": _group,
    "ensemble": _ensemble,
}
"""Judge kind name -> builder. `rubric`: absolute per-criterion verdicts (`RubricJudge`);
`group`: relative RULER-style scores of a whole group (`GroupJudge`); `ensemble`: several
judges aggregated per rollout (`EnsembleJudge`)."""


def build_judge_of(spec: JudgeSpec) -> Scorer:
    """Build the judge `spec` describes (its `kind` must be a `JUDGE_KINDS` name)."""
    if spec.kind not in JUDGE_KINDS:
        raise ValueError(
            f"judge {spec.name!r}: unknown kind {spec.kind!r}; allowed: {sorted(JUDGE_KINDS)}"
        )
    return JUDGE_KINDS[spec.kind](spec)
