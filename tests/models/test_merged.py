"""Sampling a LoRA policy through its merged copy gives the PEFT model's samples."""

import asyncio

import torch

from burnish.models.lora import attach_lora
from burnish.models.merged import MergedCopy
from burnish.models.tiny import tiny_model
from burnish.rollout.base import SamplingParams
from burnish.rollout.local import LocalSampler


def _policy():
    model, tok = tiny_model(seed=0)
    policy = attach_lora(model, rank=4)
    with torch.no_grad():  # a non-trivial adapter
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    return policy, tok


def _sample(policy, tok, merge):
    sampler = LocalSampler(policy, tok, seed=0, merge_lora=merge)
    params = SamplingParams(n=4, max_new_tokens=8, temperature=1.0, seed=7)
    prompts = [tok.encode("12+3="), tok.encode("7-9=")]
    return asyncio.run(sampler.sample(prompts, params)), sampler


def test_merged_copy_samples_what_the_peft_model_samples_and_follows_updates():
    policy, tok = _policy()
    plain, sampler = _sample(policy, tok, merge=False)
    merged, sampler = _sample(policy, tok, merge=True)
    assert isinstance(sampler._merged[1], MergedCopy)
    assert [c.token_ids for c in merged] == [c.token_ids for c in plain]
    for a, b in zip(merged, plain):
        torch.testing.assert_close(
            torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0
        )

    # an in-place update of the adapter (what the optimizer does) reaches the copy
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_A" in n:
                p.mul_(-2.0)
    copy = sampler._merged[1]
    before = [t.weight.clone() for _, t in copy.targets]
    copy.refresh()
    assert all(not torch.equal(b, t.weight) for b, (_, t) in zip(before, copy.targets))
    layer, target = copy.targets[0]
    expect = layer.get_base_layer().weight + layer.get_delta_weight("default")
    torch.testing.assert_close(target.weight, expect)


def test_the_policy_is_never_modified_and_disabled_adapters_fall_back():
    from burnish.models.lora import reference_mode

    policy, tok = _policy()
    weights = {n: p.clone() for n, p in policy.named_parameters()}
    _sample(policy, tok, merge=True)
    assert all(torch.equal(weights[n], p) for n, p in policy.named_parameters())
    copy = MergedCopy.build(policy)
    with reference_mode(policy):
        assert not copy.usable()  # sampling the base model goes through PEFT
    assert copy.usable()
