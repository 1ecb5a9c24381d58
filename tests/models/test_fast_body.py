"""`FastBody` gives transformers' hidden states and gradients, and steps aside where it cannot."""

import pytest
import torch
from lora_helpers import grouped_model, nonzero_lora_policy, random_lora

from burnish.models.fast_body import fast_body
from burnish.models.frozen_base import lower_base_precision
from burnish.models.lora import attach_lora
from burnish.models.shared_prefix import shared_prefix_logprobs
from burnish.models.tiny import tiny_model


def _policy(arch: str):
    if arch == "llama":
        return nonzero_lora_policy(seed=1).train()
    return random_lora(grouped_model(arch)[0]).train()


def _packed_inputs():
    """Two segments side by side: a 5-token prefix, then a 4-token suffix that sees it."""
    ids = torch.tensor([[9, 30, 41, 52, 12, 60, 61, 62, 63]])
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8]])
    seg = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    mask = ((seg[:, None] == seg[None, :]) | ((seg[:, None] == 1) & (seg[None, :] == 0))) & causal
    return ids, mask[None, None], pos


def _hidden_and_grads(model, run):
    model.zero_grad(set_to_none=True)
    hidden = run()
    weights = torch.linspace(-1, 1, hidden.numel()).view_as(hidden)
    (hidden * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return hidden.detach(), grads


def _compare(model, exact: bool = True):
    ids, mask, pos = _packed_inputs()
    fast = fast_body(model)
    assert fast is not None
    inner = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    want, want_g = _hidden_and_grads(
        model,
        lambda: (
            inner(
                input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False
            ).last_hidden_state
        ),
    )
    got, got_g = _hidden_and_grads(model, lambda: fast(ids, mask, pos))
    assert want.abs().max() > 0 and want_g and sorted(got_g) == sorted(want_g)
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(got, want, **tol)
    for name in want_g:
        assert want_g[name].abs().max() > 0, name
        torch.testing.assert_close(got_g[name], want_g[name], **tol, msg=name)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_lora_hidden_states_and_gradients_are_transformers(arch):
    """On a packed block mask, with LoRA on every projection (qwen2: q/k/v biases). Bit for bit
    without grouped-query attention; with it (qwen2, mistral) SDPA's ``enable_gqa`` rounds the
    attention backward otherwise than transformers' repeated keys."""
    _compare(_policy(arch), exact=arch == "llama")


def test_full_fine_tuning_and_lowered_bases_are_transformers():
    """Trainable plain linears (every weight gets its gradient), and LoRA over bf16 bases."""
    model, _ = tiny_model("llama", hidden_size=32, num_layers=2, num_heads=2, seed=2)
    _compare(model.train())
    policy = nonzero_lora_policy(seed=3).train()
    assert lower_base_precision(policy, "bfloat16") > 0
    _compare(policy)


def test_steps_aside_where_it_cannot_run():
    policy = _policy("llama")
    assert fast_body(policy) is not None
    layer = policy.get_base_model().model.layers[0]
    handle = layer.self_attn.q_proj.register_forward_hook(lambda *a: None)
    assert fast_body(policy) is None  # a hook must run
    handle.remove()
    handle = layer.mlp.register_full_backward_hook(lambda *a: None)
    assert fast_body(policy) is None  # a backward hook must run
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *a: None)
    assert fast_body(policy) is None  # so must a hook for every module
    handle.remove()
    assert fast_body(policy) is not None
    layer.gradient_checkpointing = True
    assert fast_body(policy) is None
    layer.gradient_checkpointing = False
    policy.get_base_model().config.attention_dropout = 0.1
    assert fast_body(policy) is None  # training with attention dropout
    policy.eval()
    assert fast_body(policy) is not None  # no dropout in eval mode
    with policy.disable_adapter():  # not LeanLinear's plain case: PEFT's forward runs
        assert fast_body(policy) is None
    dropped = attach_lora(tiny_model("llama", hidden_size=32, num_heads=2)[0], rank=4, dropout=0.1)
    assert fast_body(dropped) is None
    inner = policy.get_base_model().model
    inner.embed_tokens = torch.nn.Sequential(inner.embed_tokens)  # a wrapper without a weight
    assert fast_body(policy) is None


def test_packed_layout_runs_it_and_matches_the_model():
    """The packed layout's log-probs and gradients with `FastBody` and with transformers' body."""
    import burnish.models.shared_prefix as sp

    policy = _policy("llama")
    tokens = torch.tensor([[9, 30, 41, 52, 60, 61, 0], [9, 30, 41, 52, 70, 71, 72]])
    lengths, share = torch.tensor([6, 7]), torch.tensor([4, 4])

    def run():
        logp, _ = shared_prefix_logprobs(policy, tokens, lengths, share, layout="packed")
        return logp

    calls = []
    real = sp.fast_body
    try:
        sp.fast_body = lambda m: calls.append(m) or real(m)
        fast, fast_g = _hidden_and_grads(policy, run)
        sp.fast_body = lambda m: None
        slow, slow_g = _hidden_and_grads(policy, run)
    finally:
        sp.fast_body = real
    assert calls and real(policy) is not None
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)
    for name in slow_g:
        torch.testing.assert_close(fast_g[name], slow_g[name], rtol=0, atol=0, msg=name)
