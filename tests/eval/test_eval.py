"""pass@k against brute force, evaluate() with a scripted sampler, and the CLI commands."""

from __future__ import annotations

import json
import math
from itertools import combinations, islice

import pytest
from typer.testing import CliRunner

from burnish.cli import app
from burnish.envs import load_env
from burnish.envs.registry import BUILTINS
from burnish.eval import evaluate, pass_at_k
from burnish.models.tiny import char_tokenizer
from burnish.rollout.scripted import ScriptedSampler, parse_char_chat, teacher_policy

TOK = char_tokenizer()


def brute_force_pass_at_k(n, c, k):
    """Fraction of all k-subsets of n samples (the first c correct) holding a correct one."""
    subsets = list(combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 8, 10])
def test_pass_at_k_matches_brute_force(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)
    assert pass_at_k(n, 1, 1) == pytest.approx(1 / n)


def test_pass_at_k_rejects_bad_input():
    for n, c, k in [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)]:
        with pytest.raises(ValueError, match=f"n={n}, c={c}, k={k}"):
            pass_at_k(n, c, k)


def half_right_policy(env, tasks):
    """Right on tasks whose answer is even, wrong otherwise (as a deterministic 'model')."""
    by_prompt = {t.prompt[0].content: t for t in tasks}

    def policy(prompt):
        task = by_prompt[parse_char_chat(prompt)[0].content]
        return str(task.answer + (task.answer % 2))

    return policy


def test_evaluate_with_scripted_sampler():
    env = load_env("arithmetic")
    tasks = list(islice(env.tasks("test", 0), 20))
    sampler = ScriptedSampler(TOK, half_right_policy(env, tasks))
    result = evaluate(None, TOK, env, samples=4, n_tasks=20, sampler=sampler, seed=0)
    even = sum(t.answer % 2 == 0 for t in tasks) / 20
    assert 0 < even < 1
    assert result.pass_at_1 == pytest.approx(even)
    assert result.pass_at[4] == pytest.approx(even)  # deterministic: all 4 samples agree
    assert result.mean_reward == pytest.approx(even)
    assert result.mean_turns == 1.0 and result.errors == 0
    assert set(result.pass_at) == {1, 2, 4}
    d = result.to_dict()
    assert d["pass@1"] == result.pass_at_1 and "pass@4" in d and "mean_reward" in d


def test_evaluate_multi_turn_teacher_is_perfect():
    env = load_env("guess-number")
    tasks = list(islice(env.tasks("test", 0), 10))
    sampler = ScriptedSampler(TOK, teacher_policy(env, tasks))
    result = evaluate(None, TOK, env, samples=2, n_tasks=10, sampler=sampler)
    assert result.pass_at_1 == 1.0 and result.mean_reward == 1.0
    assert result.mean_turns > 1.0 and not math.isnan(result.pass_at[2])
    assert result.components["won"] == 1.0
    assert result.components["turns"] == result.mean_turns


def test_evaluate_reports_component_means():
    env = load_env("calculator")
    tasks = list(islice(env.tasks("test", 0), 6))
    sampler = ScriptedSampler(TOK, teacher_policy(env, tasks))
    result = evaluate(None, TOK, env, samples=2, n_tasks=6, sampler=sampler)
    assert result.components["used_tool"] == 1.0 and result.components["correct"] == 1.0
    assert result.to_dict()["components"]["tool_calls"] == 1.0


runner = CliRunner()


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_cli_envs_validate_ok(name):
    result = runner.invoke(app, ["envs", "validate", name, "--n", "20"])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_cli_envs_validate_broken_scorer_exits_nonzero():
    target = "tests_broken_env_module:BrokenArithmetic"
    result = runner.invoke(app, ["envs", "validate", target, "--n", "3"])
    assert result.exit_code == 1
    assert "train-" in result.output and "expected the maximum 1.0" in result.output


def test_cli_envs_validate_unknown_name():
    result = runner.invoke(app, ["envs", "validate", "nope"])
    assert result.exit_code == 2
    assert "available: arithmetic" in result.output


def test_cli_envs_list():
    result = runner.invoke(app, ["envs", "list"])
    assert result.exit_code == 0
    assert all(name in result.output for name in BUILTINS)


def test_cli_eval_json(tmp_path):
    from burnish.models.tiny import tiny_model

    model, tok = tiny_model(seed=1)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    args = ["eval", "--model", str(tmp_path / "m"), "--env", "arithmetic", "--samples", "2"]
    result = runner.invoke(
        app, [*args, "--n", "3", "--max-new-tokens", "4", "--json", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"pass@1", "pass@2", "mean_reward"} <= set(last)
    assert last["n_tasks"] == 3 and 0.0 <= last["pass@1"] <= 1.0
    assert "mean reward" in result.output
