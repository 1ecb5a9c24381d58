"""Environment helpers: EnvMix, the registry, tool schemas, tool-call parsers, ToolEnv."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from importlib.metadata import EntryPoint
from itertools import islice

import pytest

from burnish.envs import (
    COMPACT,
    HERMES,
    EnvMix,
    ToolEnv,
    ToolError,
    UnknownEnvironmentError,
    load_env,
    parser_for,
    tool_schema,
)
from burnish.envs import registry as registry_module
from burnish.envs.builtin import ArithmeticEnv, ReverseEnv
from burnish.envs.tool_calls import INVALID_CALL, POSITIONAL
from burnish.models.tiny import char_tokenizer
from burnish.rollout.base import SamplingParams
from burnish.rollout.episode import run_episodes
from burnish.rollout.scripted import ScriptedSampler
from burnish.types import Message, Score, StopReason, Task, ToolCall


def test_envmix_follows_weights_and_seed():
    mix = EnvMix([ArithmeticEnv(), ReverseEnv()], weights=[3, 1])
    tasks = list(islice(mix.tasks("train", 0), 4000))
    counts = Counter(t.env for t in tasks)
    # binomial(4000, 0.75): sd ~27, so +-150 is far outside chance
    assert abs(counts["arithmetic"] - 3000) < 150, counts
    assert [t.id for t in islice(mix.tasks("train", 0), 100)] == [t.id for t in tasks[:100]]
    assert [t.id for t in islice(mix.tasks("train", 1), 100)] != [t.id for t in tasks[:100]]
    reverse_task = next(t for t in tasks if t.env == "reverse")
    mix.validate(reverse_task)  # routed to ReverseEnv


def test_envmix_zero_weight_and_bad_weights():
    mix = EnvMix({"arithmetic": ArithmeticEnv(), "reverse": ReverseEnv()}, weights=[1, 0])
    assert {t.env for t in islice(mix.tasks("test", 0), 200)} == {"arithmetic"}
    with pytest.raises(ValueError, match="weights"):
        EnvMix([ArithmeticEnv(), ReverseEnv()], weights=[1])
    with pytest.raises(ValueError, match="weights"):
        EnvMix([ArithmeticEnv()], weights=[-1])


def test_envmix_runs_episodes_per_environment():
    tok = char_tokenizer()
    mix = EnvMix([ArithmeticEnv(), ReverseEnv()])
    tasks = list(islice(mix.tasks("test", 0), 12))
    sampler = ScriptedSampler(tok, lambda p: "1")
    trajs = asyncio.run(run_episodes(mix, tasks, sampler, tok, SamplingParams(max_new_tokens=8)))
    assert all(t.stop_reason == StopReason.DONE for t in trajs)
    assert {t.task.env for t in trajs} == {"arithmetic", "reverse"}


def test_registry_unknown_name_lists_available():
    with pytest.raises(UnknownEnvironmentError) as err:
        load_env("arithmetik")
    message = str(err.value)
    assert "arithmetik" in message
    assert all(n in message for n in ("arithmetic", "reverse", "guess-number", "calculator"))


def test_registry_module_attr_and_errors():
    env = load_env("burnish.envs.builtin.reverse:ReverseEnv", max_len=4)
    assert env.max_len == 4
    with pytest.raises(UnknownEnvironmentError, match="no attribute"):
        load_env("burnish.envs.builtin.reverse:Nope")
    with pytest.raises(UnknownEnvironmentError, match="cannot import"):
        load_env("no_such_module_xyz:Env")
    with pytest.raises(TypeError, match="not an Environment"):
        load_env("collections:OrderedDict")


def test_registry_entry_points(monkeypatch):
    ep = EntryPoint(
        "my-env", "burnish.envs.builtin.arithmetic:ArithmeticEnv", "burnish.environments"
    )
    monkeypatch.setattr(
        registry_module,
        "entry_points",
        lambda group: [ep] if group == registry_module.ENTRY_POINT_GROUP else [],
    )
    assert registry_module.list_envs()["my-env"] == ep.value
    assert isinstance(load_env("my-env", high=20), ArithmeticEnv)


def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Args:
        a: the first number.
        b: the second number, which
            defaults to two.
    """
    return a + b


def test_tool_schema_from_hints_and_docstring():
    schema = tool_schema(add)["function"]
    assert schema["name"] == "add" and schema["description"] == "Add two integers."
    props = schema["parameters"]["properties"]
    assert props["a"] == {"type": "integer", "description": "the first number."}
    assert props["b"]["description"] == "the second number, which defaults to two."
    assert schema["parameters"]["required"] == ["a"]

    def untyped(x):
        return x

    with pytest.raises(TypeError, match="'x' needs a type hint"):
        tool_schema(untyped)


def test_parsers_round_trip_and_malformed():
    call = ToolCall("add", {"a": 3, "b": 4}, id="call_0")
    assert HERMES.parse(HERMES.format((call,))) == (call,)
    text = COMPACT.format((call,))
    assert text == "<call>add(3, 4)</call>"
    assert COMPACT.parse(text)[0].arguments == {POSITIONAL: ["3", "4"]}
    assert COMPACT.parse("<call>f(g(1, 2), 3)</call>")[0].arguments[POSITIONAL] == ["g(1, 2)", "3"]
    assert COMPACT.parse("no call here") == ()
    assert HERMES.parse("<tool_call>{not json</tool_call>")[0].name == INVALID_CALL
    assert COMPACT.parse("<call>12*7</call>")[0].name == INVALID_CALL


def test_parser_for_tokenizers():
    tok = char_tokenizer()
    assert parser_for(tok) is COMPACT
    tok.chat_template = "{% for m in messages %}<tool_call>{{ m['content'] }}{% endfor %}"
    assert parser_for(tok) is HERMES


def slow_tool(x: str) -> str:
    """Sleeps."""
    time.sleep(1.0)
    return x


def crash_tool(x: str) -> str:
    """Raises a bug."""
    raise RuntimeError("tool bug")


def picky_tool(x: int) -> str:
    """Rejects negatives."""
    if x < 0:
        raise ToolError("x must be >= 0")
    return str(x)


class PlayEnv(ToolEnv):
    name = "play"

    def __init__(self):
        super().__init__([slow_tool, crash_tool, picky_tool, add], timeout_s=0.2)

    def score_answer(self, task, answer, trajectory):
        return Score(1.0)


def call(env, text):
    calls = COMPACT.parse(text)
    task = Task("t", (Message("user", "go"),))
    return asyncio.run(env.step(task, None, Message("assistant", text, tool_calls=calls)))


def test_tool_env_model_errors_are_tool_messages():
    env = PlayEnv()
    assert call(env, "<call>add(3, 4)</call>").observation[0].content == "7"
    assert (
        call(env, "<call>picky_tool(-1)</call>").observation[0].content == "error: x must be >= 0"
    )
    assert "bad argument" in call(env, "<call>picky_tool(abc)</call>").observation[0].content
    assert "unknown tool 'nope'" in call(env, "<call>nope(1)</call>").observation[0].content
    assert "missing argument 'a'" in call(env, "<call>add()</call>").observation[0].content
    assert call(env, "the answer is 7").done


def test_tool_env_crash_and_timeout_are_tool_messages_the_episode_goes_on():
    tok = char_tokenizer()
    env = PlayEnv()
    scripts = {"q0": "<call>crash_tool(1)</call>", "q1": "<call>slow_tool(1)</call>", "q2": "done"}
    tasks = [Task(k, (Message("user", k),), env="play") for k in scripts]
    sampler = ScriptedSampler(tok, lambda p: next(v for k, v in scripts.items() if k in p))
    trajs = asyncio.run(run_episodes(env, tasks, sampler, tok, SamplingParams(max_new_tokens=40)))
    # the scripted policy keeps calling the tool, so the first two run out of turns
    assert [t.stop_reason for t in trajs] == [
        StopReason.MAX_TURNS,
        StopReason.MAX_TURNS,
        StopReason.DONE,
    ]
    assert all(t.error is None for t in trajs)
    tool_out = [[m.content for m in t.messages if m.role == "tool"] for t in trajs]
    assert tool_out[0][0] == "error: crash_tool failed: RuntimeError: tool bug"
    assert tool_out[1][0] == "error: slow_tool did not finish within 0.2 s"


def test_a_float_from_score_answer_names_the_environment_and_the_fix():
    import asyncio

    import pytest

    from burnish.envs import SingleTurnEnv
    from burnish.scoring import EnvScorer
    from burnish.types import Message, Task

    class FloatEnv(SingleTurnEnv):
        name = "float-env"

        def tasks(self, split, seed):
            yield Task(f"{split}-0", (Message("user", "1+1="),), 2, self.name)

        def score_answer(self, task, answer):
            return 1.0

        def gold_answer(self, task):
            return "2"

    env = FloatEnv()
    task = next(env.tasks("train", 0))
    with pytest.raises(TypeError, match=r"'float-env': score_answer returned float 1.0.*Score"):
        env.validate(task)

    class RawEnv(FloatEnv):
        name = "raw-env"

        def score(self, task, trajectory):
            return {"value": 1.0}

    from burnish.types import StopReason, Trajectory

    traj = Trajectory(task, (), (*task.prompt, Message("assistant", "2")), StopReason.DONE)
    with pytest.raises(TypeError, match=r"'raw-env': score returned dict"):
        asyncio.run(EnvScorer(RawEnv()).score_group(task, [traj]))
