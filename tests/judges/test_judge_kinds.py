"""Judge kinds: one table (`JUDGE_KINDS`) is the only list, the config accepts exactly its
names, and an ensemble is built from a config."""

import asyncio

import pytest
from judge_helpers import GOOD, NONE, keyword_task

from burnish.config import ConfigError, loads_config
from burnish.judges import EnsembleJudge, GroupJudge, RubricJudge
from burnish.judges import kinds as kinds_module
from burnish.train.setup import build_judge


def _entries(server, body):
    return loads_config(
        f"""
[[judges]]
{body}
base_url = "{server.base_url}"
"""
    ).judges


def test_config_accepts_exactly_the_table_names(server):
    assert set(kinds_module.JUDGE_KINDS) == {"rubric", "group", "ensemble"}
    with pytest.raises(ConfigError, match="unknown judge kind 'pairwise'; allowed: rubric, group"):
        _entries(server, 'name = "j"\nkind = "pairwise"')


def test_rubric_and_group_kinds(server, tmp_path):
    (rubric,) = _entries(server, 'name = "r"\nkind = "rubric"\nrubric = "keywords"')
    assert isinstance(build_judge(rubric, str(tmp_path)), RubricJudge)
    (group,) = _entries(server, 'name = "g"\nkind = "group"')
    assert isinstance(build_judge(group, str(tmp_path)), GroupJudge)
    (bare,) = _entries(server, 'name = "r"\nkind = "rubric"')
    with pytest.raises(ValueError, match="judge 'r': a rubric judge needs `rubric`"):
        build_judge(bare, str(tmp_path))


def test_ensemble_from_config_scores_with_its_members(server, tmp_path):
    text = f"""
[[judges]]
name = "panel"
kind = "ensemble"
aggregate = "mean"

[[judges.members]]
name = "a"
rubric = "keywords"
base_url = "{server.base_url}"

[[judges.members]]
name = "b"
kind = "group"
rubric = "keywords"
base_url = "{server.base_url}"
"""
    (entry,) = loads_config(text).judges
    judge = build_judge(entry, str(tmp_path))
    assert isinstance(judge, EnsembleJudge) and [m.name for m in judge.members] == ["a", "b"]
    good, none = asyncio.run(judge.score_candidates(keyword_task(), [GOOD, NONE]))
    assert set(good.components) >= {"a/value", "b/value", "judge/disagreement"}
    for s in (good, none):  # the mean of the two members' own values
        assert s.value == pytest.approx((s.components["a/value"] + s.components["b/value"]) / 2)
    assert good.components["a/value"] > none.components["a/value"]
    (empty,) = loads_config('[[judges]]\nname = "p"\nkind = "ensemble"').judges
    with pytest.raises(ValueError, match="an ensemble judge needs `members`"):
        build_judge(empty, str(tmp_path))


def test_a_new_kind_is_one_table_entry(server, tmp_path, monkeypatch):
    """Adding a judge kind takes one `JUDGE_KINDS` entry and no other edit."""

    class Constant:
        name = "const"

        def __init__(self, spec):
            self.name = spec.name

        async def score_group(self, task, trajectories):
            raise NotImplementedError

    monkeypatch.setitem(kinds_module.JUDGE_KINDS, "constant", Constant)
    (entry,) = _entries(server, 'name = "c"\nkind = "constant"')
    judge = build_judge(entry, str(tmp_path))
    assert isinstance(judge, Constant) and judge.name == "c"
