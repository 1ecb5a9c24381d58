"""The examples of docs/environments.md run as written (every ```python block, in order)."""

import asyncio
import re
import sys
from pathlib import Path

import pytest

from burnish.envs import load_env, validate_env
from burnish.types import StopReason

DOC = Path(__file__).resolve().parents[2] / "docs" / "environments.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[str]:
    return _PYTHON_BLOCK.findall(DOC.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def namespace():
    ns: dict = {"__name__": "environments_doc"}
    for i, block in enumerate(_blocks()):
        exec(compile(block, f"{DOC.name} python block {i}", "exec"), ns)
    return ns


def test_doc_has_the_examples():
    assert len(_blocks()) == 4


def test_single_turn_example_runs(namespace):
    traj, env, task = namespace["traj"], namespace["env"], namespace["task"]
    assert traj.completion == "2"
    assert traj.stop_reason == StopReason.DONE
    assert env.score(task, traj).value == float(task.answer == 2)
    assert traj.mask[-2:] == [1, 1] and set(traj.mask[:-2]) == {0}


def test_tool_example_validates_and_answers_tool_errors(namespace):
    env = namespace["LetterCountEnv"]()
    assert validate_env(env, n=10).ok
    assert namespace["count_letter"]("strawberry", "r") == 3
    call = namespace["ToolCall"]("count_letter", {"word": "banana", "letter": "an"})
    out = asyncio.run(env.call_tool(call))
    assert out.startswith("error:")


def test_example_loads_by_module_attr(tmp_path, monkeypatch):
    (tmp_path / "my_envs.py").write_text(_blocks()[0], encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        env = load_env("my_envs:VowelCountEnv")
        assert env.name == "vowel-count"
        assert validate_env(env, n=20).ok
    finally:
        sys.modules.pop("my_envs", None)


def test_multi_turn_example_validates_and_plays(namespace):
    from burnish.types import Message

    assert namespace["hot_cold_report"].ok
    env = namespace["HotColdEnv"]()
    task = next(env.tasks("train", 0))
    res = asyncio.run(env.step(task, None, Message("assistant", "0")))
    assert not res.done and res.observation[0].content == "higher" and res.state == 1
    res = asyncio.run(env.step(task, 1, Message("assistant", str(task.answer))))
    assert res.done and res.state == 2


def test_readme_environment_example_runs():
    readme = DOC.parents[1] / "README.md"
    blocks = [b for b in _PYTHON_BLOCK.findall(readme.read_text()) if "SingleTurnEnv" in b]
    assert len(blocks) == 1
    ns: dict = {"__name__": "readme_env"}
    exec(compile(blocks[0], "README.md environment example", "exec"), ns)
    env = ns["DoubleEnv"]()
    task = next(env.tasks("test", 0))
    assert env.score_answer(task, str(task.answer)).value == 1.0
    assert env.score_answer(task, "x").value == 0.0
