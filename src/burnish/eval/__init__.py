"""Evaluation of a model or adapter on environments: pass@k, reward, turns, tokens."""

from burnish.eval.evaluate import EvalResult, evaluate, evaluate_model, format_table, summarize
from burnish.eval.passk import mean_pass_at_k, pass_at_k
from burnish.eval.scripted import ScriptedSampler, teacher_policy

__all__ = [
    "EvalResult",
    "ScriptedSampler",
    "evaluate",
    "evaluate_model",
    "format_table",
    "mean_pass_at_k",
    "pass_at_k",
    "summarize",
    "teacher_policy",
]
