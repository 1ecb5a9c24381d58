"""`PROVIDER/TASK` names: resolution, hints, missing extras, config load, listing, per-env
metrics of a mixture."""

from __future__ import annotations

import subprocess
import sys

import pytest

from burnish.config import ConfigError, loads_config
from burnish.envs import load_env
from burnish.envs.commands import envs_list_text, provider_tasks_text, validate_command
from burnish.envs.providers import PROVIDERS, MissingExtraError, split_name
from burnish.envs.registry import UnknownEnvironmentError, check_env
from burnish.train.metrics import env_metrics, step_metrics
from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory


def test_burnish_imports_without_the_provider_libraries():
    code = (
        "import sys, burnish, burnish.envs, burnish.envs.providers, burnish.config\n"
        "from burnish.envs.commands import envs_list_text\n"
        "bad = [m for m in ('reasoning_gym', 'verifiers', 'openenv', 'datasets') "
        "if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_provider_names_split_at_the_first_slash():
    assert split_name("reasoning-gym/basic_arithmetic") == ("reasoning-gym", "basic_arithmetic")
    assert split_name("openenv/http://127.0.0.1:8000") == ("openenv", "http://127.0.0.1:8000")
    assert split_name("dataset//tmp/qa.jsonl") == ("dataset", "/tmp/qa.jsonl")
    assert split_name("my_pkg.envs:Env") is None and split_name("nope/x") is None


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("reasoning-gym/basic_arithmetik", "did you mean reasoning-gym/basic_arithmetic"),
        ("reasoning_gym/basic_arithmetic", "did you mean 'reasoning-gym/basic_arithmetic'"),
        ("arithmetik", "did you mean 'arithmetic'"),
        ("reasoning-gym/", "names no task"),
        ("dataset/no/such/file.jsonl", "no file"),
        ("openenv/not a url", "is not a server URL"),
    ],
)
def test_bad_names_are_named_with_the_nearest(name, needle):
    with pytest.raises(UnknownEnvironmentError) as e:
        check_env(name, {})
    assert needle in str(e.value)


def test_config_checks_provider_names_and_kwargs_at_load():
    cfg = loads_config(
        '[[env.mix]]\nname = "reasoning-gym/basic_arithmetic"\nkwargs = {max_digits = 2}\n'
        '[[env.mix]]\nname = "arithmetic"\n'
    )
    assert [e.name for e in cfg.env.entries()] == ["reasoning-gym/basic_arithmetic", "arithmetic"]
    with pytest.raises(ConfigError, match="did you mean 'max_digits'"):
        loads_config('[env]\nname = "reasoning-gym/basic_arithmetic"\nkwargs = {max_digit = 2}')
    with pytest.raises(ConfigError, match="did you mean reasoning-gym/chain_sum"):
        loads_config('[env]\nname = "reasoning-gym/chain_sums"')


def test_a_missing_package_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "reasoning_gym" else real(n, *a)
    )
    with pytest.raises(MissingExtraError, match=r"pip install 'burnish\[envs\]'"):
        load_env("reasoning-gym/basic_arithmetic")
    assert "reasoning-gym  not installed: pip install 'burnish[envs]'" in envs_list_text()


def test_envs_list_shows_every_provider_and_its_tasks():
    text = envs_list_text()
    for name in PROVIDERS:
        assert f"\n{name} " in text
    assert "106 procedural generators" in text
    tasks = provider_tasks_text("reasoning-gym").splitlines()
    assert len(tasks) == 106 and "reasoning-gym/basic_arithmetic" in tasks
    with pytest.raises(UnknownEnvironmentError, match="unknown provider"):
        provider_tasks_text("reasoning_gym")


def test_validate_command_counts_a_whole_provider(monkeypatch):
    from burnish.envs.providers import reasoning_gym

    monkeypatch.setattr(reasoning_gym, "task_names", lambda: ["basic_arithmetic", "boxnet"])
    text, ok = validate_command("reasoning-gym", n=3)
    assert not ok and text.endswith(
        "1 of 2 reasoning-gym tasks validate (3 train + 3 test tasks each)"
    )
    assert "reasoning-gym/boxnet: 6 failure(s)" in text and "has no gold answer" in text


def _group(env: str, rewards: list[float]) -> Group:
    task = Task("t", (Message("user", "q"),), env=env)
    trajs = tuple(
        Trajectory(task, (Segment((1,), True, (0.0,)),), (), StopReason.DONE, 1) for _ in rewards
    )
    return Group(task, trajs, tuple(Score(r) for r in rewards))


def test_a_mixture_step_logs_each_environment():
    groups = [_group("a", [1.0, 0.0]), _group("b", [1.0, 1.0]), _group("b", [0.0, 0.0])]
    m = step_metrics(groups)
    assert m["env/a/reward_mean"] == 0.5 and m["env/b/reward_mean"] == 0.5
    assert m["env/a/groups"] == 1.0 and m["env/b/groups"] == 2.0
    assert env_metrics(groups[1:]) == {}  # one environment: nothing beyond reward/mean
