"""Tool failures: whatever a tool raises on the model's input goes back to the model as a tool
error and the episode is scored; only a declared infrastructure failure ends it unscored."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from burnish.envs import load_env
from burnish.envs.builtin.calculator import MAX_ABS, safe_eval
from burnish.envs.tool_calls import COMPACT
from burnish.envs.tools import ToolEnv, ToolError, ToolInfrastructureError
from burnish.models.tiny import char_tokenizer
from burnish.rollout.base import SamplingParams
from burnish.rollout.episode import run_episodes
from burnish.rollout.scripted import ScriptedSampler
from burnish.scoring import EnvScorer
from burnish.types import Message, Score, StopReason, Task


def _tool_output(env, text: str) -> str:
    calls = COMPACT.parse(text)
    task = Task("t", (Message("user", "go"),))
    result = asyncio.run(env.step(task, None, Message("assistant", text, tool_calls=calls)))
    assert not result.done
    return result.observation[0].content


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("1e15**64", "out of range"),  # float overflow inside the power
        ("1e15*1e15", "out of range"),
        ("1e999", "too large"),  # a literal that is already inf
        ("1" + "0" * 16, "too large"),
        ("-1" + "0" * 40 + "+1", "too large"),
        ("(0.5-0.5)**-1", "division by zero"),
    ],
)
def test_calculator_overflow_and_huge_literals_are_tool_errors(expression, needle):
    env = load_env("calculator")
    out = _tool_output(env, f"<call>calculator({expression})</call>")
    assert out.startswith("error: ") and needle in out, out
    with pytest.raises(ToolError, match=needle):
        safe_eval(expression)


def test_calculator_limits_are_named_and_in_range_values_still_work():
    with pytest.raises(ToolError, match=re.escape(f"at most {MAX_ABS:.0e}")):
        safe_eval("2e15+1")
    assert safe_eval("1e15-1") == 1e15 - 1
    assert safe_eval(str(MAX_ABS)) == MAX_ABS
    with pytest.raises(ToolError, match="cannot parse"):
        safe_eval("1\x00")  # ast.parse raises ValueError on a NUL byte


def crash_tool(x: str) -> str:
    """Has a bug on some inputs."""
    return str({}["missing"])


def huge_error_tool(x: str) -> str:
    """Raises with a very long message."""
    raise ValueError("x" * 100_000)


def slow_tool(x: str) -> str:
    """Sleeps past the timeout."""
    time.sleep(0.5)
    return x


def sandbox_tool(x: str) -> str:
    """Its backing service is down."""
    raise ToolInfrastructureError("sandbox at 127.0.0.1:1 refused the connection")


class FaultEnv(ToolEnv):
    name = "fault"

    def __init__(self) -> None:
        super().__init__([crash_tool, huge_error_tool, slow_tool, sandbox_tool], timeout_s=0.1)

    def score_answer(self, task, answer, trajectory):
        return Score(float(answer.strip() == "42"))


def test_any_exception_in_a_tool_is_a_tool_error_message():
    env = FaultEnv()
    assert _tool_output(env, "<call>crash_tool(1)</call>") == (
        "error: crash_tool failed: KeyError: 'missing'"
    )
    long = _tool_output(env, "<call>huge_error_tool(1)</call>")
    assert long.startswith("error: huge_error_tool failed: ValueError: xxx") and len(long) < 1100


def test_a_tool_timeout_is_shown_to_the_model():
    out = _tool_output(FaultEnv(), "<call>slow_tool(1)</call>")
    assert out == "error: slow_tool did not finish within 0.1 s"


def test_a_declared_infrastructure_failure_still_ends_the_episode():
    env = FaultEnv()
    task = Task("t", (Message("user", "go"),))
    action = Message("assistant", "x", tool_calls=COMPACT.parse("<call>sandbox_tool(1)</call>"))
    with pytest.raises(ToolInfrastructureError, match="refused"):
        asyncio.run(env.step(task, None, action))


def _play(env, policy, tasks):
    tok = char_tokenizer()
    sampler = ScriptedSampler(tok, policy)
    params = SamplingParams(max_new_tokens=60)
    return asyncio.run(run_episodes(env, tasks, sampler, tok, params))


def test_calculator_overflow_episode_is_scored_not_an_error():
    env = load_env("calculator")
    task = next(env.tasks("train", 0))

    def policy(prompt: str) -> str:  # overflow the tool, then answer wrongly
        return "7" if "error:" in prompt else "<call>calculator(1e15**64)</call>"

    (traj,) = _play(env, policy, [task])
    assert traj.stop_reason == StopReason.DONE and traj.error is None
    tool_msgs = [m.content for m in traj.messages if m.role == "tool"]
    assert len(tool_msgs) == 1 and "out of range" in tool_msgs[0]
    (score,) = asyncio.run(EnvScorer(env).score_group(task, [traj]))
    assert score.value == 0.0  # a wrong answer stays a wrong answer, never "unscorable"


def test_tool_crash_and_timeout_episodes_are_scored_infrastructure_is_not():
    env = FaultEnv()
    scripts = {
        "q0": "<call>crash_tool(1)</call>",
        "q1": "<call>slow_tool(1)</call>",
        "q2": "<call>sandbox_tool(1)</call>",
    }
    tasks = [Task(k, (Message("user", k),), env="fault") for k in scripts]

    def policy(prompt: str) -> str:
        if "error:" in prompt:
            return "41"
        return next(v for k, v in scripts.items() if k in prompt)

    trajs = _play(env, policy, tasks)
    assert [t.stop_reason for t in trajs] == [StopReason.DONE, StopReason.DONE, StopReason.ERROR]
    assert trajs[2].error.startswith("ToolInfrastructureError")
    scores = [asyncio.run(EnvScorer(env).score_group(t.task, [t]))[0].value for t in trajs]
    assert scores == [0.0, 0.0, None]
