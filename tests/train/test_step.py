"""Behaviour lock: the update does not depend on the micro-batch size (normalisers are per step)."""

import copy
import itertools

import pytest
import torch

from burnish.algorithms import LossConfig
from burnish.models import attach_lora, tiny_model
from burnish.rollout.pack import pack
from burnish.train.step import StepSettings, train_on_batch
from burnish.types import Group, Message, Score, Segment, StopReason, Task, Trajectory


def _batch(vocab: int, shared_prompt: bool = False):
    """Two groups of 4; with `shared_prompt` the rows of a group start with the same prompt."""
    g = torch.Generator().manual_seed(0)
    task = Task(id="t", prompt=(Message("user", "x"),))
    groups = []
    for _ in range(2):
        trajs = []
        prompt = torch.randint(10, vocab, (4,), generator=g).tolist() if shared_prompt else []
        for _ in range(4):
            n_prompt = int(torch.randint(2, 5, (1,), generator=g))
            n_out = int(torch.randint(1, 6, (1,), generator=g))
            toks = torch.randint(10, vocab, (n_prompt + n_out,), generator=g).tolist()
            if shared_prompt:
                n_prompt, toks = 4, prompt + toks[n_prompt:]
            segs = (
                Segment(tuple(toks[:n_prompt]), False),
                Segment(tuple(toks[n_prompt:]), True, tuple([-1.0] * n_out)),
            )
            trajs.append(Trajectory(task, segs, task.prompt, StopReason.DONE))
        advantages = tuple(torch.randn(4, generator=g).tolist())
        scores = tuple(Score(0.0) for _ in trajs)
        groups.append(Group(task, tuple(trajs), scores, advantages=advantages))
    return pack(groups)


@pytest.mark.parametrize("shared_prompt", [False, True])
@pytest.mark.parametrize("loss", ["grpo", "dapo", "dr_grpo", "cispo", "gspo"])
def test_update_is_micro_batch_invariant(loss, shared_prompt):
    """Also locks that the shared-prefix forward and the plain forward give the same update."""
    base, tok = tiny_model("llama", hidden_size=32, num_layers=1, num_heads=2)
    policy = attach_lora(base, rank=4, alpha=8)
    batch = _batch(len(tok), shared_prompt=shared_prompt)
    cfg = LossConfig(name=loss, kl_coef=0.05, max_completion_len=8)
    results = []
    for micro, shared_prefix in itertools.product((1, 3, 8), (True, False)):
        p = copy.deepcopy(policy)
        opt = torch.optim.SGD([q for q in p.parameters() if q.requires_grad], lr=1.0)
        settings = StepSettings(micro_batch_size=micro, grad_clip=None, shared_prefix=shared_prefix)
        train_on_batch(p, batch, cfg, opt, settings)
        results.append({k: v.detach().clone() for k, v in p.named_parameters() if v.requires_grad})
    for other in results[1:]:
        for k, v in results[0].items():
            torch.testing.assert_close(other[k], v, rtol=1e-5, atol=1e-6)
    changed = [k for k, v in results[0].items() if "lora_B" in k and v.abs().sum() > 0]
    assert changed, "the update changed no adapter weight"


def test_off_policy_epochs_use_a_fixed_old_policy():
    base, tok = tiny_model("llama", hidden_size=32, num_layers=1, num_heads=2)
    policy = attach_lora(base, rank=4, alpha=8)
    batch = _batch(len(tok))
    opt = torch.optim.SGD([q for q in policy.parameters() if q.requires_grad], lr=0.5)
    m = train_on_batch(
        policy,
        batch,
        LossConfig(name="grpo"),
        opt,
        StepSettings(micro_batch_size=4, inner_epochs=2, minibatches=2),
    )
    assert m["train/optimizer_steps"] == 4.0
    assert m["ratio/max"] > 1.0  # later updates are off-policy: ratios move away from 1


def test_optimizer_is_fused_adamw_with_the_per_tensor_update():
    """`build_optimizer` uses the fused AdamW kernel; its steps match the per-tensor loop's."""
    from burnish.config import load_config
    from burnish.train.setup import build_optimizer

    train_cfg = load_config(None, ["train.weight_decay=0.1"]).train
    base, _ = tiny_model("llama", hidden_size=32, num_layers=2, num_heads=2)
    policy = attach_lora(base, rank=4, alpha=8)
    ref = copy.deepcopy(policy)
    opt, _ = build_optimizer(train_cfg, policy)
    assert opt.defaults["fused"]
    ref_params = [p for p in ref.parameters() if p.requires_grad]
    ref_opt = torch.optim.AdamW(
        ref_params, lr=train_cfg.lr, betas=train_cfg.betas, weight_decay=0.1, foreach=False
    )
    params = [p for p in policy.parameters() if p.requires_grad]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        for p, q in zip(params, ref_params, strict=True):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref_opt.step()
    for p, q in zip(params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
