"""SFT, distillation, on-policy distillation, forgetting and `burnish compare`, on a tiny model."""

import asyncio
import json

import pytest
import torch
from train_helpers import run_overrides
from typer.testing import CliRunner

from burnish.cli import app
from burnish.compare import RunCurve, at_gain, compare, load_curve, r_squared
from burnish.config import ConfigError, load_config
from burnish.envs import load_env
from burnish.eval.forgetting import kl_to_base
from burnish.models import load_model, sequence_logprobs
from burnish.models.lora import attach_lora
from burnish.models.packed import packed_logprobs
from burnish.models.pretrain import encode_transcript
from burnish.train.distill import DATA_FILE, distill
from burnish.train.loop import train
from burnish.train.sft import sft, sft_update
from burnish.train.sft_data import batch_indices, encode_chat, env_transcripts, pack_rows

RETENTION = ["eval.retention=['arithmetic']", "eval.kl_tasks=3", "eval.retention_max_new_tokens=6"]


def _sft_overrides(tiny_dir, run_dir, *extra):
    return run_overrides(
        tiny_dir, run_dir, "sft.data='env:reverse'", "sft.n_examples=12", "sft.batch_size=5",
        *RETENTION, *extra,
    )  # fmt: skip


def test_encode_chat_matches_the_pretraining_encoding_and_masks_assistant_only(tiny_dir):
    _, tok = load_model(tiny_dir)
    for env in ("arithmetic", "calculator", "guess-number"):
        for messages in asyncio.run(env_transcripts(env, 2, 0)):
            ids, mask = encode_chat(tok, messages)
            assert (ids, mask) == encode_transcript(tok, messages)
            assert sum(mask) > 0 and mask[0] == 0


def test_packing_has_no_cross_contamination(tiny_dir):
    model, tok = load_model(tiny_dir)
    examples = [encode_chat(tok, m) for m in asyncio.run(env_transcripts("calculator", 4, 0))]
    rows = pack_rows(examples, 512)
    assert rows.tokens_R_L.shape[0] < len(examples)  # several transcripts share a row
    packed = packed_logprobs(model, rows.tokens_R_L, rows.segments_R_L, rows.positions_R_L)
    alone = 0.0
    for ids, m in examples:
        logp, _ = sequence_logprobs(model, torch.tensor([ids]))
        alone += float((logp[0].detach() * torch.tensor(m, dtype=torch.float32)).sum())
    assert float((packed * rows.mask_R_L).sum()) == pytest.approx(alone, rel=1e-5)
    assert int(rows.mask_R_L.sum()) == sum(sum(m) for _, m in examples)
    with pytest.raises(ValueError, match="max_length"):
        pack_rows(examples, 10)


def test_batch_indices_cover_every_example_each_pass_and_are_pure():
    seen = [i for step in range(4) for i in batch_indices(10, 5, seed=3, step=step)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert batch_indices(10, 5, 3, 2) == batch_indices(10, 5, 3, 2)
    assert batch_indices(3, 5, 0, 0) and len(batch_indices(3, 5, 0, 0)) == 3


def test_sft_gradient_does_not_depend_on_micro_batch_size(tiny_dir):
    model, tok = load_model(tiny_dir)
    examples = [encode_chat(tok, m) for m in asyncio.run(env_transcripts("reverse", 6, 0))]
    rows = pack_rows(examples, 64, pack=False)
    grads = []
    for mb in (1, 4, 64):
        policy = attach_lora(load_model(tiny_dir)[0], rank=4)
        torch.manual_seed(0)
        for p in policy.parameters():
            if p.requires_grad:
                torch.nn.init.normal_(p, std=0.02)
        opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.0)
        sft_update(policy, rows, opt, micro_batch_size=mb, grad_clip=None)
        grads.append(
            torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])
        )
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(
        grads[0], grads[2], atol=1e-6
    )


@pytest.mark.parametrize("lora", [True, False])
def test_kl_to_base_is_zero_before_training_and_positive_after(tiny_dir, lora):
    model, tok = load_model(tiny_dir)
    policy = attach_lora(model, rank=4) if lora else model
    base = None
    if not lora:
        import copy

        base = copy.deepcopy(model)
    env = load_env("reverse")
    kw = dict(base=base, n_tasks=3, seed=0, max_new_tokens=5)
    zero = asyncio.run(kl_to_base(policy, tok, [env], **kw))
    assert zero["forward"] == pytest.approx(0, abs=1e-6) and zero["reverse"] == pytest.approx(
        0, abs=1e-6
    )
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if p.requires_grad and ("lora_B" in name or not lora):
                p.add_(0.05 * torch.randn_like(p))
    state = torch.random.get_rng_state()
    moved = asyncio.run(kl_to_base(policy, tok, [env], **kw))
    assert torch.equal(state, torch.random.get_rng_state())  # measuring leaves the RNG alone
    assert moved["forward"] > 1e-4 and moved["reverse"] > 1e-4


def test_sft_run_directory_summary_and_forgetting(tiny_dir, tmp_path):
    cfg = load_config(None, _sft_overrides(tiny_dir, tmp_path / "sft", "eval.every=2"))
    summary = sft(cfg)
    run = tmp_path / "sft"
    assert (run / "adapter").is_dir() and (run / "summary.json").is_file()
    assert summary["method"] == "sft" and summary["steps"] == 4
    assert set(summary["retention"]) == {"arithmetic"}
    assert set(summary["kl_to_base"]) == {"forward", "reverse"}
    assert summary["compute"]["samples"] == 20 and summary["compute"]["tokens"] > 0
    curve = load_curve(run)
    assert curve.steps == [0, 2, 4] and curve.kl_forward[0] == pytest.approx(0, abs=1e-6)
    assert "[sft]" in (run / "config.toml").read_text()


def test_jsonl_data_and_bad_jsonl(tiny_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    line = {
        "messages": [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "cba"}]
    }
    data.write_text(json.dumps(line) + "\n\n" + json.dumps(line) + "\n")
    cfg = load_config(None, _sft_overrides(tiny_dir, tmp_path / "j", f"sft.data='{data}'"))
    assert sft(cfg)["steps"] == 4
    data.write_text('{"messages": [{"role": "user", "content": "x"}]}\n')
    cfg = load_config(None, _sft_overrides(tiny_dir, tmp_path / "k", f"sft.data='{data}'"))
    with pytest.raises(ValueError, match="no assistant"):
        sft(cfg)


def test_on_policy_distillation_run(tiny_dir, tmp_path):
    steps = []
    cfg = load_config(
        None,
        run_overrides(
            tiny_dir, tmp_path / "opd", *RETENTION, f"teacher.model='{tiny_dir}'",
            "algorithm.distill_coef=1.0",
        ),
    )  # fmt: skip
    summary = train(cfg, on_step=lambda s, m: steps.append(m))
    assert summary["method"] == "opd"
    # the teacher is the student's own base: the reverse KL starts at 0 (up to sampler rounding)
    assert abs(steps[0]["distill/reverse_kl"]) < 1e-3
    assert all("distill/teacher_tokens" in m for m in steps)


def test_distill_keeps_the_data_set_and_teacher_cost(tiny_dir, tmp_path):
    cfg = load_config(
        None,
        _sft_overrides(
            tiny_dir, tmp_path / "dist", f"teacher.model='{tiny_dir}'", "teacher.n_tasks=4",
            "teacher.samples_per_task=2", "teacher.filter='none'",
        ),
    )  # fmt: skip
    summary = distill(cfg)
    lines = (tmp_path / "dist" / DATA_FILE).read_text().splitlines()
    assert len(lines) == 8 and "messages" in json.loads(lines[0])
    assert summary["method"] == "distill" and summary["teacher"]["samples"] == 8
    assert summary["teacher"]["pass_rate"] == 1.0
    assert summary["compute"]["samples"] == 20 + 8


def test_config_rejects_bad_retention_and_coef():
    with pytest.raises(ConfigError, match="retention"):
        load_config(None, ["env.name='reverse'", "eval.retention=['reverse']"])
    with pytest.raises(ConfigError, match="distill_coef"):
        load_config(None, ["algorithm.distill_coef=2"])
    with pytest.raises(ConfigError):
        load_config(None, ["eval.retention=['no-such-env']"])


def _curve(name, gains, drops, kls):
    return RunCurve(
        run_dir=name, method="rl", env="e", steps=[0, 10, 20][: len(gains)],
        new_task=[0.5 + g for g in gains], retention={"r": [0.5 - d for d in drops]},
        kl_forward=kls, kl_reverse=kls, samples=[0, 100, 200][: len(gains)],
        tokens=[0, 1000, 2000][: len(gains)],
    )  # fmt: skip


def test_matched_gain_interpolates_and_r2():
    a = _curve("a", [0.0, 0.2, 0.4], [0.0, 0.1, 0.3], [0.0, 1.0, 2.0])
    b = _curve("b", [0.0, 0.1, 0.2], [0.0, 0.0, 0.05], [0.0, 0.2, 0.4])
    result = compare([a, b])
    assert result["matched"]["gain"] == pytest.approx(0.2)
    assert result["matched"]["runs"]["a"]["retention_drop"] == pytest.approx(0.1)
    assert result["matched"]["runs"]["b"]["kl_forward"] == pytest.approx(0.4)
    half = at_gain(a, 0.1)
    assert half["retention_drop"] == pytest.approx(0.05) and half["tokens"] == pytest.approx(500)
    assert r_squared([0, 1, 2], [1, 3, 5]) == pytest.approx(1.0)
    assert r_squared([0, 1, 2], [1, 1, 1]) == 0.0
    assert result["razor"]["points"] == 6


def test_compare_cli_json_contract(tiny_dir, tmp_path):
    runs = []
    for name in ("s1", "s2"):
        sft(load_config(None, _sft_overrides(tiny_dir, tmp_path / name, "eval.every=2")))
        runs.append(str(tmp_path / name))
    res = CliRunner().invoke(app, ["compare", *runs, "--json", "--out", str(tmp_path / "plots")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) == {"runs", "matched", "razor"}
    run = out["runs"][0]
    assert set(run) == {
        "run_dir", "method", "new_task", "retention", "kl_to_base", "samples", "tokens",
        "wall_seconds",
    }  # fmt: skip
    assert run["method"] == "sft" and set(run["new_task"]) == {"env", "before", "after"}
    assert set(run["kl_to_base"]) == {"forward", "reverse"}
    assert set(run["retention"]["arithmetic"]) == {"before", "after"}
    assert set(out["matched"]) == {"gain", "runs"} and set(out["matched"]["runs"]) == set(runs)
    assert set(out["matched"]["runs"][runs[0]]) == {"retention_drop", "kl_forward"}
    assert set(out["razor"]) == {"r2", "points"} and out["razor"]["points"] == 6
    assert (tmp_path / "plots" / "forgetting_vs_kl.png").is_file()
    bad = CliRunner().invoke(app, ["compare", str(tmp_path / "nothing")])
    assert bad.exit_code == 2
