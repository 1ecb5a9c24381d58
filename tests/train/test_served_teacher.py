"""Distillation from a served teacher (a fake OpenAI-compatible server on 127.0.0.1), the judge
filter of `burnish distill`, and on-policy distillation with a served teacher's log-probs."""

import asyncio
import json
from itertools import islice

import pytest
import torch
from fake_teacher import FakeTeacher, serving
from safetensors.torch import load_file
from train_helpers import run_overrides

from burnish.config import load_config
from burnish.envs import load_env
from burnish.judges.scripted import scripted_judge_server
from burnish.judges.scripted_rules import Fault, ScriptedRules
from burnish.models import load_model, tiny_model
from burnish.rollout.openai_sampler import OpenAISampler, SamplerServerError
from burnish.train.distill import DATA_FILE, distill, sample_teacher
from burnish.train.loop import train
from burnish.train.sft_data import encode_chat
from burnish.train.teacher import load_teacher, served_teacher_logprobs, teacher_logprobs
from burnish.types import TrainBatch

N_TASKS, K = 4, 2


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny teacher unlike the student (another seed, sharper logits), sharing its character
    tokenizer."""
    path = tmp_path_factory.mktemp("teacher")
    model, tok = tiny_model("llama", hidden_size=32, num_layers=2, num_heads=4, seed=1)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(30.0)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _gold_teacher(tok, seed):
    """A fake teacher answering the even-numbered train tasks of `reverse` with their gold answers
    (prompt ids -> answer ids, as the episode runner renders them) and the others with "?"."""
    env, answers, gold = load_env("reverse"), {}, {}
    for i, task in enumerate(islice(env.tasks("train", seed), N_TASKS)):
        messages, _ = asyncio.run(env.gold_transcript(task))
        ids, mask = encode_chat(tok, messages)
        cut = mask.index(1)
        if i % 2 == 0:
            answers[tuple(ids[:cut])] = ids[cut:]
            gold[task.id] = messages[-1].content
    return FakeTeacher(tok, answers=answers, fallback=tok.encode("?") + [tok.eos_token_id]), gold


def _distill_overrides(tiny_dir, run_dir, url, *extra):
    return run_overrides(
        tiny_dir, run_dir, f"teacher.base_url='{url}'", f"teacher.n_tasks={N_TASKS}",
        f"teacher.samples_per_task={K}", "teacher.max_new_tokens=32", "sft.batch_size=2",
        *extra,
    )  # fmt: skip


def test_distill_from_a_served_teacher(tiny_dir, tmp_path):
    _, tok = load_model(tiny_dir)
    fake, gold = _gold_teacher(tok, seed=0)
    with serving(fake) as url:
        cfg = load_config(
            None, _distill_overrides(tiny_dir, tmp_path / "d", url, "teacher.price_per_1k_tokens=2")
        )
        assert cfg.train.seed == 0
        summary = distill(cfg)
    run = tmp_path / "d"
    kept = [json.loads(line) for line in (run / DATA_FILE).read_text().splitlines()]
    assert len(kept) == K * len(gold) == 4  # the verifier keeps the gold answers only
    assert {r["task_id"] for r in kept} == set(gold)
    for r in kept:
        assert r["reward"] == 1.0 and r["messages"][-1] == {
            "role": "assistant", "content": gold[r["task_id"]],
        }  # fmt: skip
    teacher = summary["teacher"]
    assert teacher["samples"] == N_TASKS * K and teacher["kept"] == 4
    assert teacher["pass_rate"] == pytest.approx(0.5)
    assert teacher["tokens"] == fake.sampled_tokens > 0
    assert teacher["cost"] == pytest.approx(fake.sampled_tokens / 1000 * 2)
    assert json.loads((run / "summary.json").read_text())["teacher"] == teacher
    assert len(fake.requests) == N_TASKS * K
    assert all(r["model"] == "teacher" and isinstance(r["prompt"][0], int) for r in fake.requests)
    # the student trained on the kept set: its LoRA B matrices (zero at init) moved
    assert summary["method"] == "distill" and summary["steps"] > 0
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any(float(w.abs().max()) > 0 for n, w in weights.items() if "lora_B" in n)


def _kept(cfg, tok):
    kept, cost = asyncio.run(sample_teacher(cfg, tok))
    return {(r["task_id"], r["messages"][-1]["content"]) for r in kept}, cost


def test_the_judge_filter_keeps_what_every_reward_judge_passes(tiny_dir, tmp_path):
    _, tok = load_model(tiny_dir)
    fake, gold = _gold_teacher(tok, seed=0)
    lenient = ScriptedRules(keyword_weight=0.0, length_weight=1.0, length_target=1)
    with serving(fake) as url, scripted_judge_server(lenient) as judge:
        entry = (
            f"judges=[{{name='j', rubric='keywords', base_url='{judge.base_url}', cache=false}}]"
        )

        def cfg(name, *extra):
            return load_config(None, _distill_overrides(tiny_dir, tmp_path / name, url, *extra))

        verified, _ = _kept(cfg("v", entry), tok)
        assert {t for t, _ in verified} == set(gold)
        judged, cost = _kept(cfg("j", entry, "teacher.filter='judge'"), tok)
        assert len(judged) == N_TASKS and cost["pass_rate"] == 1.0  # the judge passes "?" too
        assert judge.calls > 0
        both, cost = _kept(cfg("b", entry, "teacher.filter='both'"), tok)
        assert both == verified and cost["pass_rate"] == pytest.approx(0.5)
        judge.reconfigure(ScriptedRules())  # no keywords in a reverse task: every score is low
        for mode in ("judge", "both"):
            kept, cost = _kept(cfg(f"r{mode}", entry, f"teacher.filter='{mode}'"), tok)
            assert kept == set() and cost["pass_rate"] == 0.0
        assert _kept(cfg("rv", entry), tok)[0] == verified  # the verifier filter asks no judge
        # a failed judge call is Score(None): never a pass, even when any score would pass
        judge.reconfigure(ScriptedRules(faults=(Fault("http_500", probability=1.0),)))
        failing = entry
        for mode in ("judge", "both"):
            kept, _ = _kept(
                cfg(f"f{mode}", failing, f"teacher.filter='{mode}'", "teacher.min_judge_score=0"),
                tok,
            )
            assert kept == set()
        with pytest.raises(ValueError, match='teacher.filter = "judge" needs at least one'):
            _kept(cfg("none", "teacher.filter='judge'"), tok)


def _batch(rows):
    T = max(len(r) for r in rows)
    tokens = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.tensor(r)
    lengths = torch.tensor([len(r) for r in rows])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    zeros = torch.zeros(len(rows), T)
    return TrainBatch(tokens, mask, zeros, torch.zeros(len(rows)), lengths)


def test_served_teacher_logprobs_equal_the_in_process_ones(tiny_dir, teacher_dir):
    model, tok = load_model(teacher_dir)
    fake = FakeTeacher(tok, model=model)
    batch = _batch([tok.encode("reverse: abc"), tok.encode("xy"), tok.encode("a longer row here")])
    local = teacher_logprobs(model.eval(), batch, micro_batch_size=2)
    with serving(fake) as url:
        served = load_teacher(load_config(None, [f"teacher.base_url='{url}'"]).teacher, None, tok)
        assert isinstance(served, OpenAISampler)
        remote = asyncio.run(served_teacher_logprobs(served, batch))
        fake.omit_prompt_logprobs = True
        with pytest.raises(SamplerServerError, match="prompt_logprobs request parameter"):
            asyncio.run(served_teacher_logprobs(served, batch))
    # float32 forward passes, padded micro-batches vs one row at a time: equal to 1e-5
    torch.testing.assert_close(remote, local, atol=1e-5, rtol=0)
    assert float(local[0].abs().sum()) > 1.0 and float(remote[1, 2:].abs().sum()) == 0.0
    body = fake.requests[0]
    assert body["max_tokens"] == 1 and body["prompt_logprobs"] == 0 and body["model"] == "teacher"
    assert sorted(len(r["prompt"]) for r in fake.requests[:3]) == sorted(batch.lengths_B.tolist())


def test_load_teacher_refuses_a_served_and_a_local_teacher_together(tiny_dir):
    cfg = load_config(None, ["teacher.base_url='http://127.0.0.1:1/v1'", "teacher.model='x'"])
    with pytest.raises(ValueError, match="either teacher.base_url"):
        load_teacher(cfg.teacher, cfg.model, None)


def test_on_policy_distillation_from_a_served_teacher_matches_in_process(
    tiny_dir, teacher_dir, tmp_path
):
    def first_step(name, teacher):
        steps = []
        cfg = load_config(
            None,
            run_overrides(
                tiny_dir, tmp_path / name, teacher, "algorithm.distill_coef=1.0", "train.steps=1",
            ),
        )  # fmt: skip
        summary = train(cfg, on_step=lambda s, m: steps.append(m))
        assert summary["method"] == "opd"
        return steps[0]

    local = first_step("local", f"teacher.model='{teacher_dir}'")
    model, tok = load_model(teacher_dir)
    fake = FakeTeacher(tok, model=model.eval())
    with serving(fake) as url:
        served = first_step("served", f"teacher.base_url='{url}'")
    assert len(fake.requests) == 3 * 4  # one scoring request per sampled sequence
    assert abs(local["distill/reverse_kl"]) > 0.1  # another model: the teacher disagrees
    for key in ("distill/reverse_kl", "loss/total", "distill/teacher_tokens"):
        assert served[key] == pytest.approx(local[key], abs=1e-5), key
