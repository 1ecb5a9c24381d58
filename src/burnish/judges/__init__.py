"""LLM judges: rubric files, absolute rubric judging, relative group judging, ensembles,
an OpenAI-compatible judge client with cache, rate limits and accounting, calibration and
replay, and a scripted stand-in judge server for offline work and tests.

Every judge is a `Scorer`: `await judge.score_group(task, trajectories) -> list[Score]`, with
`Score(None)` (never 0) for a rollout the judge could not score.
"""

from burnish.judges.cache import JudgeCache, cache_key
from burnish.judges.calibrate import CANARIES, calibrate, cohen_kappa, load_labels, spearman
from burnish.judges.client import JudgeCallError, JudgeClient, JudgeConfigurationError
from burnish.judges.config import JudgeConfig
from burnish.judges.core import Scorer, TextScorer
from burnish.judges.ensemble import AGGREGATES, EnsembleJudge
from burnish.judges.group_judge import GroupJudge
from burnish.judges.parse import JudgeOutputError
from burnish.judges.replay import replay
from burnish.judges.rubric import (
    Category,
    Criterion,
    Rubric,
    RubricError,
    builtin_rubric,
    load_rubric,
    parse_rubric,
)
from burnish.judges.rubric_judge import RubricJudge

__all__ = [
    "AGGREGATES",
    "CANARIES",
    "Category",
    "Criterion",
    "EnsembleJudge",
    "GroupJudge",
    "JudgeCache",
    "JudgeCallError",
    "JudgeClient",
    "JudgeConfig",
    "JudgeConfigurationError",
    "JudgeOutputError",
    "Rubric",
    "RubricError",
    "RubricJudge",
    "Scorer",
    "TextScorer",
    "builtin_rubric",
    "cache_key",
    "calibrate",
    "cohen_kappa",
    "load_labels",
    "load_rubric",
    "parse_rubric",
    "replay",
    "spearman",
]
