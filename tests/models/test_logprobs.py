import pytest
import torch

from burnish.models.logprobs import position_ids_from_mask, sequence_logprobs
from burnish.models.lora import attach_lora
from burnish.models.tiny import tiny_model


def _naive(model, x, mask=None, temperature=1.0):
    kwargs = {}
    if mask is not None:
        kwargs = {"attention_mask": mask, "position_ids": position_ids_from_mask(mask)}
    logits = model(x, **kwargs).logits.float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all[:, :-1].gather(-1, x[:, 1:, None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1)[:, :-1]
    zero = torch.zeros(x.shape[0], 1)
    logp, ent = torch.cat([zero, logp], 1), torch.cat([zero, ent], 1)
    if mask is not None:
        logp, ent = logp * mask, ent * mask
    return logp, ent


def _models():
    base, _ = tiny_model()
    peft_model = attach_lora(tiny_model(seed=1)[0], rank=4)
    with torch.no_grad():  # make the adapter non-trivial
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    return {"plain": base, "peft": peft_model}


@pytest.mark.parametrize("kind", ["plain", "peft"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_naive_values_and_gradients(kind, temperature):
    model = _models()[kind]
    model.train()
    x = torch.randint(3, 135, (3, 17))
    mask = torch.ones_like(x)
    mask[0, :5] = 0  # left padding
    mask[2, -4:] = 0  # right padding
    params = [p for p in model.parameters() if p.requires_grad]

    logp, ent = sequence_logprobs(
        model, x, attention_mask_B_T=mask, temperature=temperature, with_entropy=True, chunk_size=7
    )
    weights = torch.randn_like(logp)
    grads = torch.autograd.grad((logp * weights).sum() + ent.sum(), params)

    ref_logp, ref_ent = _naive(model, x, mask, temperature)
    ref_grads = torch.autograd.grad((ref_logp * weights).sum() + ref_ent.sum(), params)

    assert logp.dtype == torch.float32 and logp.shape == x.shape
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=1e-5)
    assert torch.all(logp[:, 0] == 0) and torch.all(logp[mask == 0] == 0)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(g, rg, atol=1e-5, rtol=1e-4)


def test_chunk_size_does_not_change_result_and_no_entropy_by_default():
    model, _ = tiny_model()
    x = torch.randint(3, 135, (2, 33))
    with torch.no_grad():
        a, ent = sequence_logprobs(model, x, chunk_size=1)
        b, _ = sequence_logprobs(model, x, chunk_size=4096)
    assert ent is None
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_bad_inputs_are_rejected():
    model, _ = tiny_model()
    x = torch.randint(3, 135, (2, 5))
    with pytest.raises(ValueError, match=r"tokens_B_T must be \[B, T\]"):
        sequence_logprobs(model, x[0])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        sequence_logprobs(model, x, temperature=0.0)
    with pytest.raises(ValueError, match="attention_mask shape"):
        sequence_logprobs(model, x, attention_mask_B_T=torch.ones(2, 4))


@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("entropy_grad", [False, True])
def test_frozen_head_gradient_formed_in_the_forward_pass_is_exact(softcap, entropy_grad):
    """The frozen-head path (no recomputation of the logits in the backward pass) against
    autograd's numerical gradient, in float64, with temperature and a Gemma-style softcap."""
    from burnish.models.logprobs import _FrozenHeadLogprob

    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(9, 4, dtype=torch.float64, generator=g)
    bias = torch.randn(9, dtype=torch.float64, generator=g)
    targets = torch.tensor([0, 3, 8, 3, 5])
    w_ent = torch.randn(5, dtype=torch.float64, generator=g) if entropy_grad else None

    def f(h):
        logp, ent = _FrozenHeadLogprob.apply(h, weight, bias, targets, 0.7, softcap, True)
        return logp if w_ent is None else logp + ent * w_ent

    assert torch.autograd.gradcheck(f, (hidden,))
    raw = hidden @ weight.T + bias
    capped = raw if softcap is None else torch.tanh(raw / softcap) * softcap
    ref_all = torch.log_softmax(capped / 0.7, -1)
    logp, ent = _FrozenHeadLogprob.apply(hidden, weight, bias, targets, 0.7, softcap, True)
    torch.testing.assert_close(logp, ref_all.gather(-1, targets[:, None]).squeeze(-1))
    torch.testing.assert_close(ent, -(ref_all.exp() * ref_all).sum(-1))
