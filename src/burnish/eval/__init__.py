"""Evaluation of a model or adapter on environments: pass@k, reward, turns, tokens."""

from burnish.eval.evaluate import (
    EvalResult,
    evaluate,
    evaluate_async,
    evaluate_model,
    format_table,
    summarize,
)
from burnish.eval.passk import mean_pass_at_k, pass_at_k

__all__ = [
    "EvalResult",
    "evaluate",
    "evaluate_async",
    "evaluate_model",
    "format_table",
    "mean_pass_at_k",
    "pass_at_k",
    "summarize",
]
