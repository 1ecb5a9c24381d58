"""`dataset/PATH`: local JSONL / CSV / Parquet files become single-turn environments."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("datasets")

from burnish.envs import load_env, validate_env  # noqa: E402
from burnish.types import Message, StopReason, Trajectory  # noqa: E402


def _reply(task, text):
    return Trajectory(task, (), (*task.prompt, Message("assistant", text)), StopReason.DONE, 1)


@pytest.fixture
def qa_jsonl(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("qa.jsonl", "w") as f:
        for a in range(40):
            f.write(json.dumps({"q": f"{a} squared?", "a": str(a * a), "note": "x"}) + "\n")
    return "qa.jsonl"


def test_a_local_jsonl_becomes_an_environment(qa_jsonl):
    env = load_env(f"dataset/{qa_jsonl}", question="q", answer="a", system="Reply with a number.")
    assert env.name == "dataset/qa.jsonl"
    train, test = list(env.tasks("train", 0)), list(env.tasks("test", 0))
    assert len(train) + len(test) == 40 and test
    assert not {t.prompt for t in train} & {t.prompt for t in test}
    assert [m.role for m in train[0].prompt] == ["system", "user"]
    assert [t.id for t in env.tasks("train", 0)] == [t.id for t in train]
    assert [t.id for t in env.tasks("train", 1)] != [t.id for t in train]  # shuffled by seed
    task = train[0]
    assert env.score(task, _reply(task, f" {task.answer}\n")).value == 1.0
    assert env.score(task, _reply(task, "nope")).components == {"correct": 0.0, "format": 1.0}
    assert validate_env(env, n=100).ok


def test_numeric_and_regex_scorers(qa_jsonl):
    numeric = load_env(f"dataset/{qa_jsonl}", question="q", answer="a", scorer="numeric")
    task = next(t for t in numeric.tasks("train", 0) if t.answer == "49")
    assert numeric.score(task, _reply(task, "49.0")).value == 1.0
    assert numeric.score(task, _reply(task, "forty-nine")).components == {
        "correct": 0.0,
        "format": 0.0,
    }
    regex = load_env(
        f"dataset/{qa_jsonl}", question="q", answer="a", scorer="regex",
        pattern=r"answer: (\d+)", gold_format="answer: {answer}",
    )  # fmt: skip
    task = next(regex.tasks("test", 0))
    assert regex.score(task, _reply(task, f"so the answer: {task.answer}")).value == 1.0
    assert regex.score(task, _reply(task, task.answer)).components == {
        "correct": 0.0,
        "format": 0.0,
    }
    assert validate_env(regex, n=10).ok
    with pytest.raises(ValueError, match="only by, scorer 'regex'"):
        load_env(f"dataset/{qa_jsonl}", question="q", answer="a", scorer="regex")
    with pytest.raises(ValueError, match="unknown scorer 'fuzzy'; allowed: exact, numeric, regex"):
        load_env(f"dataset/{qa_jsonl}", question="q", answer="a", scorer="fuzzy")


def test_csv_with_a_split_column_and_parquet(tmp_path):
    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer,split\n1+1=,2,train\n2+2=,4,train\n3+3=,6,test\n")
    env = load_env(f"dataset/{csv}")
    assert [t.answer for t in env.tasks("test", 0)] == [6]
    assert sorted(t.answer for t in env.tasks("train", 0)) == [2, 4]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"question": ["a?", "b?"], "answer": ["A", "B"]}), tmp_path / "qa.parquet"
    )
    env = load_env(f"dataset/{tmp_path / 'qa.parquet'}")
    assert sorted(t.answer for s in ("train", "test") for t in env.tasks(s, 0)) == ["A", "B"]


def test_a_missing_column_names_the_columns(qa_jsonl):
    with pytest.raises(ValueError, match="no column 'question'; columns: q, a, note"):
        load_env(f"dataset/{qa_jsonl}")
