import pytest

from burnish.judges.rubric import Category, RubricError, builtin_rubric, load_rubric, parse_rubric


def _crit(name="a", **kw):
    return {"name": name, "description": "d", "choices": ["no", "yes"], **kw}


def test_builtin_keywords_rubric_loads_with_a_content_version():
    r = builtin_rubric("keywords")
    assert [c.name for c in r.criteria][0] == "uses_all_keywords"
    assert r.task_info == ("keywords",)
    assert len(r.version) == 16
    assert builtin_rubric("keywords").version == r.version


def test_version_changes_with_content_not_with_comments(tmp_path):
    base = 'name = "x"\n[[criteria]]\nname = "a"\ndescription = "d"\nchoices = ["no", "yes"]\n'
    (tmp_path / "a.toml").write_text(base)
    (tmp_path / "b.toml").write_text("# a comment\n" + base)
    (tmp_path / "c.toml").write_text(base + "weight = 5.0\n")
    va, vb, vc = (load_rubric(tmp_path / f"{n}.toml").version for n in "abc")
    assert va == vb
    assert va != vc


@pytest.mark.parametrize(
    ("criteria", "match"),
    [
        ([_crit("dup"), _crit("dup")], "duplicate criterion name 'dup'"),
        ([_crit("empty", choices=[])], "criterion 'empty': choices must be a non-empty list"),
        ([_crit("one", choices=["ok"])], "criterion 'one': choices must be at least 2"),
        ([_crit("cat", category="critical")], "criterion 'cat': unknown category 'critical'"),
        ([_crit("w", weight=0)], "criterion 'w': weight must be a positive number"),
        ([_crit("p", category="pitfall")], "total weight of non-pitfall criteria must be positive"),
        ([_crit("rep", choices=["no", "no"])], "criterion 'rep': duplicate choices"),
    ],
)
def test_validation_errors_name_the_criterion(criteria, match):
    with pytest.raises(RubricError, match=match):
        parse_rubric({"name": "r", "criteria": criteria}, "r.toml")


def test_aggregation_by_rank_with_pitfall_subtracting():
    r = parse_rubric(
        {
            "criteria": [
                _crit("ess", choices=["none", "some", "all"], category="essential", weight=3),
                _crit("opt", category="optional", weight=1),
                _crit("pit", choices=["present", "absent"], category="pitfall", weight=2),
            ]
        }
    )
    # ess "some" -> 1/2, opt "yes" -> 1, pit "present" -> 0 (subtracts its full weight)
    # (3 * 0.5 + 1 * 1 - 2 * (1 - 0)) / (3 + 1) = 0.5 / 4 = 0.125
    value, parts = r.aggregate({"ess": "some", "opt": "yes", "pit": "present"})
    assert value == pytest.approx(0.125)
    assert parts == {"ess": 0.5, "opt": 1.0, "pit": 0.0}
    value, _ = r.aggregate({"ess": "all", "opt": "yes", "pit": "absent"})
    assert value == pytest.approx(1.0)
    assert r.criterion("pit").category == Category.PITFALL
    with pytest.raises(RubricError, match="verdict 'maybe'"):
        r.aggregate({"ess": "maybe", "opt": "yes", "pit": "absent"})
