"""The noisy teachers, the pretraining recipe and the shipped `burnish-tiny` model."""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from itertools import islice
from pathlib import Path

import pytest
from safetensors.torch import load_file

from burnish.envs.registry import load_env
from burnish.envs.tool_calls import COMPACT
from burnish.models.load import load_model, tiny_model_dir
from burnish.models.noisy_teachers import DEFAULT_P, MISTAKES, noisy_teacher
from burnish.models.pretrain import (
    IGNORE,
    PretrainConfig,
    TranscriptStream,
    encode_transcript,
    pretrain,
    transcript,
)
from burnish.models.tiny import char_tokenizer
from burnish.types import Message

BUILTINS = list(MISTAKES)
CARD = tiny_model_dir() / "MODEL_CARD.md"


@pytest.mark.parametrize("name", BUILTINS)
def test_gold_teacher_validates(name):
    env = load_env(name)
    for split in ("train", "test"):
        for task in islice(env.tasks(split, 0), 20):
            env.validate(task)


@pytest.mark.parametrize("name", BUILTINS)
def test_noisy_teacher_is_right_at_rate_p(name):
    """On the first turn, the teacher's message equals the gold one at rate p (4-sigma band)."""
    env = load_env(name)
    p = 0.6
    teacher = noisy_teacher(env, p)
    rng = random.Random(0)
    n = 600
    right = 0
    for task in islice(env.tasks("train", 1), n):
        messages = list(task.prompt)
        gold = env.teacher(task, messages, COMPACT)
        right += teacher(task, messages, rng) == gold
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(right / n - p) < 4 * sigma, (name, right / n, p)


@pytest.mark.parametrize("name", BUILTINS)
def test_mistakes_differ_from_gold_and_lose_reward(name):
    """p=0: every first message is a mistake; played out, fewer episodes earn the maximum."""
    env = load_env(name)
    teacher = noisy_teacher(env, 0.0)
    rng = random.Random(1)
    tasks = list(islice(env.tasks("train", 2), 50))
    for task in tasks:
        messages = list(task.prompt)
        assert teacher(task, messages, rng) != env.teacher(task, messages, COMPACT)
    gold = noisy_teacher(env, 1.0)
    max_wrong = max_gold = 0
    for task in tasks:
        for t, count in ((teacher, "wrong"), (gold, "gold")):
            messages = asyncio.run(transcript(env, t, task, rng))
            score = _score(env, task, messages)
            if count == "wrong":
                max_wrong += score == env.max_reward
            else:
                max_gold += score == env.max_reward
    assert max_gold == len(tasks)
    assert max_wrong < len(tasks) // 2, (name, max_wrong)


def _score(env, task, messages):
    from burnish.types import StopReason, Trajectory

    traj = Trajectory(task, (), tuple(messages), StopReason.DONE, turns=len(messages))
    return env.score(task, traj).value


def test_noisy_teacher_rejects_bad_p_and_unknown_env():
    with pytest.raises(ValueError, match="p must be in"):
        noisy_teacher(load_env("arithmetic"), 1.5)

    class Other:
        name = "other"

    with pytest.raises(ValueError, match="no noisy teacher for environment 'other'"):
        noisy_teacher(Other())


def test_calculator_transcript_runs_the_tool():
    env = load_env("calculator")
    task = next(env.tasks("train", 0))
    messages = asyncio.run(transcript(env, noisy_teacher(env, 1.0), task, random.Random(0)))
    roles = [m.role for m in messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert messages[1].content.startswith("<call>calculator(")
    assert messages[2].content == str(task.answer)
    assert messages[3].content == str(task.answer)


def test_encode_transcript_matches_chat_template_and_masks_assistant_tokens():
    tok = char_tokenizer()
    messages = [
        Message("user", "12*34+5=?"),
        Message("assistant", "<call>calculator(12*34+5)</call>"),
        Message("tool", "413"),
        Message("assistant", "413"),
    ]
    ids, mask = encode_transcript(tok, messages)
    text = tok.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in messages], tokenize=False
    )
    assert ids == tok.encode(text, add_special_tokens=False)
    trained = tok.decode([i for i, k in zip(ids, mask, strict=True) if k])
    assert trained == "<call>calculator(12*34+5)</call><|end|>413<|end|>"


def test_transcript_stream_is_seeded_and_pads_with_ignored_labels():
    tok = char_tokenizer()
    config = PretrainConfig()
    first = TranscriptStream(config, tok, seed=3).batch(16, chunks=2)
    again = TranscriptStream(config, tok, seed=3).batch(16, chunks=2)
    other = TranscriptStream(config, tok, seed=4).batch(16, chunks=2)
    assert len(first) == 2 and sum(x.shape[0] for x, _ in first) == 16
    for (a, la), (b, lb) in zip(first, again, strict=True):
        assert a.equal(b) and la.equal(lb)
    assert any(not a.equal(b) for (a, _), (b, _) in zip(first, other, strict=True))
    for ids, labels in first:
        padded = ids == tok.pad_token_id
        assert (labels[padded] == IGNORE).all()


def test_pretraining_is_deterministic_and_loadable(tmp_path):
    config = PretrainConfig(
        hidden_size=32, num_layers=1, num_heads=2, steps=3, batch_size=8, chunks=2, warmup_steps=1
    )
    a = pretrain(tmp_path / "a", seed=5, config=config)
    b = pretrain(tmp_path / "b", seed=5, config=config)
    c = pretrain(tmp_path / "c", seed=6, config=config)
    wa, wb, wc = (load_file(r.out_dir / "model.safetensors") for r in (a, b, c))
    assert wa.keys() == wb.keys()
    assert all(wa[k].equal(wb[k]) for k in wa)
    assert any(not wa[k].equal(wc[k]) for k in wa)
    assert a.losses == b.losses and len(a.losses) == 3
    model, tok = load_model(a.out_dir)
    assert model.config.model_type == "llama"
    assert tok.eos_token == "<|end|>"
    assert model.generation_config.eos_token_id == tok.eos_token_id
    record = json.loads((a.out_dir / "pretrain.json").read_text())
    assert record["recipe"]["seed"] == 5 and record["recipe"]["steps"] == 3


def test_pretrain_config_rejects_unknown_env():
    with pytest.raises(ValueError, match="unknown environments"):
        PretrainConfig(weights={"chess": 1.0})


def test_shipped_model_loads_and_is_small():
    model, tok = load_model("burnish-tiny")
    total = sum(f.stat().st_size for f in tiny_model_dir().iterdir() if f.is_file())
    assert total <= 8 * 1024 * 1024, total
    assert model.config.model_type == "llama"
    n_params = sum(p.numel() for p in model.parameters())
    assert f"{n_params:,}" in CARD.read_text()
    messages = [{"role": "user", "content": "47+38="}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>47+38=<|end|><|assistant|>"
    ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert tok.decode(ids, skip_special_tokens=False) == text
    assert tok.decode(tok.encode("reverse: abc", add_special_tokens=False)) == "reverse: abc"
    assert tok.eos_token_id == model.generation_config.eos_token_id


def _card_row(env: str) -> dict[str, float]:
    """The card's table row of one environment: pass@1 and pass@8."""
    for line in CARD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == f"`{env}`":
            return {"pass@1": float(cells[1]), "pass@8": float(cells[2])}
    raise AssertionError(f"no row for {env} in {CARD}")


@pytest.mark.slow
def test_card_arithmetic_numbers_reproduce():
    """Re-runs the card's arithmetic command and compares with the card's table."""
    from typer.testing import CliRunner

    from burnish.cli import app

    command = re.search(
        r"burnish (eval --model burnish-tiny --env arithmetic [^`\n]*)", CARD.read_text()
    )
    assert command is not None, "the card names no arithmetic eval command"
    result = CliRunner().invoke(app, command.group(1).split())
    assert result.exit_code == 0, result.output
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    expected = _card_row("arithmetic")
    assert round(measured["pass@1"], 3) == expected["pass@1"]
    assert round(measured["pass@8"], 3) == expected["pass@8"]


def test_card_exists_with_the_recipe():
    text = CARD.read_text()
    for env in BUILTINS:
        _card_row(env)
        assert f"--env {env}" in text
    for name, p in DEFAULT_P.items():
        assert name in text and str(p) in text
    assert Path(tiny_model_dir() / "pretrain.json").is_file()


def test_cli_tiny_pretrain_writes_a_loadable_model(tmp_path):
    from typer.testing import CliRunner

    from burnish.cli import app

    out = tmp_path / "tiny"
    result = CliRunner().invoke(app, ["tiny", "pretrain", "--out", str(out), "--steps", "2"])
    assert result.exit_code == 0, result.output
    assert "616,608 parameters" in result.output
    record = json.loads((out / "pretrain.json").read_text())
    assert record["recipe"]["steps"] == 2
    model, _ = load_model(out)
    assert sum(p.numel() for p in model.parameters()) == 616_608


def test_shipped_recipe_is_the_default_and_vllm_servable():
    """The plain command rebuilds the shipped model; its head size is one vLLM's CPU attention
    accepts (it refuses 24, the size of an earlier burnish-tiny)."""
    import inspect

    from burnish.cli import tiny_pretrain
    from burnish.models.pretrain import SHIPPED_SEED

    assert inspect.signature(tiny_pretrain).parameters["seed"].default.default == SHIPPED_SEED
    record = json.loads((tiny_model_dir() / "pretrain.json").read_text())
    assert record["recipe"]["seed"] == SHIPPED_SEED
    config = PretrainConfig()
    assert record["recipe"]["num_heads"] == config.num_heads
    assert config.hidden_size // config.num_heads in (32, 64, 80, 96, 112, 128)
