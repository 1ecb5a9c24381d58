"""Per-token log-probabilities (and entropies) of sequences under a causal LM, memory-safe.

``model(tokens).logits`` materialises ``[B, T, V]`` logits, and a float32 log-softmax over them
another copy, both kept alive for the backward pass: with a 150k vocabulary that is the largest
tensor of a training step by far. Here the transformer body runs once to give hidden states
``[B, T, H]``; the LM head is then applied to chunks of ``chunk_size`` token positions, each
chunk's logits are turned into logprobs (and entropies) at once, and when gradients are needed the
chunk is recomputed in the backward pass (activation checkpointing), so only ``[chunk, V]`` logits
ever exist.

Works for plain transformers models and PEFT-wrapped models (the LoRA layers sit inside the body
and head modules, so disabling the adapter with `reference_mode` is honoured).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from burnish.algorithms.logsoftmax import check_knobs, entropy_from_logits, selective_log_softmax
from burnish.models.wide_head import WideHead

__all__ = ["body_and_head", "position_ids_from_mask", "sequence_logprobs"]


def body_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Find the transformer body (tokens -> hidden states) and the LM head of a causal LM.

    Raises:
        TypeError: if the model exposes no output embeddings or no decoder.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    body = None
    if hasattr(base, "get_decoder"):
        body = base.get_decoder()
    if body is None or body is base:
        body = getattr(base, getattr(base, "base_model_prefix", ""), None)
    if head is None or body is None:
        raise TypeError(
            f"cannot find the transformer body and LM head of {type(base).__name__}: expected a "
            "transformers causal LM (get_output_embeddings() and get_decoder())"
        )
    return body, head


def position_ids_from_mask(attention_mask_B_T: Tensor) -> Tensor:
    """Position ids that count only real tokens, for left- or right-padded rows: [B, T] int64."""
    pos_B_T = attention_mask_B_T.long().cumsum(-1) - 1
    return pos_B_T.clamp_(min=0)


def _softcap(model: torch.nn.Module) -> float | None:
    config = getattr(model, "config", None)
    cap = getattr(config, "final_logit_softcapping", None)
    return float(cap) if cap else None


def _chunk_stats(
    head: torch.nn.Module,
    hidden_N_H: Tensor,
    targets_N: Tensor,
    temperature: float,
    softcap: float | None,
    with_entropy: bool,
) -> tuple[Tensor, Tensor]:
    logits_N_V = head(hidden_N_H)
    if softcap is not None:
        logits_N_V = torch.tanh(logits_N_V / softcap) * softcap
    logp_N = selective_log_softmax(logits_N_V, targets_N, temperature=temperature)
    if with_entropy:
        ent_N = entropy_from_logits(logits_N_V, temperature=temperature)
    else:
        ent_N = torch.zeros_like(logp_N)
    return logp_N, ent_N


class _FrozenHeadLogprob(torch.autograd.Function):
    """One chunk's log-probs (and entropies) through a frozen linear LM head, with the gradient
    with respect to the hidden states formed in the forward pass.

    ``logp_t`` depends on ``hidden_t`` alone, so its gradient is one ``[H]`` row per position,
    ``(d logp_t / d logits_t) @ W``, which is computed while the chunk's logits exist: the backward
    pass then scales those rows by the incoming gradient and never recomputes the ``[chunk, V]``
    logits. That is two vocabulary-sized matmuls per chunk instead of the three of a checkpointed
    head (forward, recomputation, gradient). The entropy's gradient is rarely needed (only with
    an entropy bonus); when it is, the backward pass recomputes the chunk for it.
    """

    @staticmethod
    def forward(ctx, hidden_N_H, weight_V_H, bias_V, targets_N, temperature, softcap, with_ent):
        raw_N_V = torch.nn.functional.linear(hidden_N_H, weight_V_H, bias_V)
        capped_N_V = raw_N_V if softcap is None else torch.tanh(raw_N_V / softcap) * softcap
        f32 = torch.promote_types(capped_N_V.dtype, torch.float32)  # float64 stays (gradcheck)
        logp_N_V = torch.log_softmax(capped_N_V.to(f32) / temperature, dim=-1)
        logp_N = logp_N_V.gather(-1, targets_N[:, None]).squeeze(-1)
        p_N_V = logp_N_V.exp()
        ent_N = -(p_N_V * logp_N_V.nan_to_num(neginf=0.0)).sum(-1) if with_ent else None
        g_N_V = p_N_V.neg_()  # d logp_t / d (logits / temperature): onehot - p
        g_N_V.scatter_add_(-1, targets_N[:, None], torch.ones_like(logp_N[:, None]))
        if softcap is not None:
            g_N_V.mul_(1 - torch.tanh(raw_N_V.to(f32) / softcap) ** 2)
        grad_N_H = (g_N_V.div_(temperature).to(weight_V_H.dtype) @ weight_V_H).to(hidden_N_H.dtype)
        ctx.save_for_backward(grad_N_H, hidden_N_H, weight_V_H, bias_V, targets_N)
        ctx.knobs = (temperature, softcap, with_ent)
        if ent_N is None:
            ent_N = torch.zeros_like(logp_N)
        return logp_N, ent_N

    @staticmethod
    def backward(ctx, g_logp_N, g_ent_N):
        grad_N_H, hidden_N_H, weight_V_H, bias_V, targets_N = ctx.saved_tensors
        out_N_H = grad_N_H * g_logp_N[:, None].to(grad_N_H.dtype)
        temperature, softcap, with_ent = ctx.knobs
        if with_ent and g_ent_N is not None and bool(g_ent_N.any()):  # else the zeros returned
            with torch.enable_grad():
                h_N_H = hidden_N_H.detach().requires_grad_()
                raw_N_V = torch.nn.functional.linear(h_N_H, weight_V_H, bias_V)
                if softcap is not None:
                    raw_N_V = torch.tanh(raw_N_V / softcap) * softcap
                ent_N = entropy_from_logits(raw_N_V, temperature=temperature)
                (g_h_N_H,) = torch.autograd.grad(ent_N, h_N_H, g_ent_N)
            out_N_H = out_N_H + g_h_N_H
        return out_N_H, None, None, None, None, None, None


FROZEN_HEAD_MIN_VOCAB = 8192
"""Vocabularies from this size take `_FrozenHeadLogprob`. Below it the head costs little either
way (no difference measured at 135 tokens) and the checkpointed path is kept."""


def _frozen_linear(head: torch.nn.Module) -> bool:
    """Whether `head` is a plain linear layer without trainable weights (LoRA leaves it so) over
    a vocabulary of at least `FROZEN_HEAD_MIN_VOCAB` tokens."""
    return (
        type(head) in (torch.nn.Linear, WideHead)
        and head.out_features >= FROZEN_HEAD_MIN_VOCAB
        and not any(p.requires_grad for p in head.parameters())
    )


def head_logprobs(
    model: torch.nn.Module,
    head: torch.nn.Module,
    hidden_N_H: Tensor,
    targets_N: Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 512,
) -> tuple[Tensor, Tensor]:
    """LM head, log-prob of `targets_N` and entropy over N positions, `chunk_size` at a time.

    When gradients are on, only one `[chunk_size, V]` block of logits exists at a time, in the
    backward pass too: a frozen linear head (the LoRA case) runs `_FrozenHeadLogprob`, which
    needs no recomputation; any other head (a trained or adapted one) is checkpointed per chunk.
    Returns float32 `[N]` log-probs and entropies (zeros when `with_entropy` is false).
    """
    softcap = _softcap(model.get_base_model() if hasattr(model, "get_base_model") else model)
    use_ckpt = torch.is_grad_enabled() and hidden_N_H.requires_grad
    frozen = use_ckpt and _frozen_linear(head)
    logps, ents = [], []
    for s in range(0, hidden_N_H.shape[0], chunk_size):
        args = (head, hidden_N_H[s : s + chunk_size], targets_N[s : s + chunk_size])
        extra = (temperature, softcap, with_entropy)
        if frozen:
            lp, en = _FrozenHeadLogprob.apply(
                args[1], head.weight, head.bias, args[2], temperature, softcap, with_entropy
            )
        elif use_ckpt:
            lp, en = checkpoint(_chunk_stats, *args, *extra, use_reentrant=False)
        else:
            lp, en = _chunk_stats(*args, *extra)
        logps.append(lp)
        ents.append(en)
    if not logps:
        empty = hidden_N_H.new_zeros(0, dtype=torch.float32)
        return empty, empty
    return torch.cat(logps), torch.cat(ents)


def sequence_logprobs(
    model: torch.nn.Module,
    tokens_B_T: Tensor,
    *,
    attention_mask_B_T: Tensor | None = None,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 512,
) -> tuple[Tensor, Tensor | None]:
    """Logprob of every token given the tokens before it, and optionally the entropies.

    ``logp[:, t] = log p(tokens[:, t] | tokens[:, :t])`` under ``softmax(logits / temperature)``;
    ``logp[:, 0] = 0`` (nothing predicts the first token), and so is every position whose token is
    padding (``attention_mask == 0``). ``entropy[:, t]`` is the entropy of the distribution that
    predicted token ``t`` (0 at ``t = 0`` and at padding).

    Padding may be on either side: position ids are computed from the attention mask.

    Args:
        model: a transformers causal LM or a PEFT model around one.
        tokens_B_T: [B, T] int64 token ids.
        attention_mask_B_T: [B, T] 1 for real tokens, 0 for padding; default all ones.
        temperature: the sampling temperature the tokens were drawn with (> 0).
        with_entropy: also return the entropies.
        chunk_size: token positions (over the whole batch) whose logits exist at once.

    Returns:
        ``(logp_B_T, entropy_B_T or None)``, float32, differentiable when grad is enabled.

    Raises:
        ValueError: on bad shapes, temperature or chunk size.
    """
    if tokens_B_T.dim() != 2:
        raise ValueError(f"tokens_B_T must be [B, T], got shape {tuple(tokens_B_T.shape)}")
    if attention_mask_B_T is not None and attention_mask_B_T.shape != tokens_B_T.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask_B_T.shape)} != tokens shape "
            f"{tuple(tokens_B_T.shape)}"
        )
    check_knobs(temperature, chunk_size)
    b, t = tokens_B_T.shape
    body, head = body_and_head(model)
    kwargs: dict = {"input_ids": tokens_B_T, "use_cache": False}
    if attention_mask_B_T is not None:
        kwargs["attention_mask"] = attention_mask_B_T
        kwargs["position_ids"] = position_ids_from_mask(attention_mask_B_T)
    hidden_B_T_H = body(**kwargs).last_hidden_state

    n = b * (t - 1)
    hidden_N_H = hidden_B_T_H[:, :-1].reshape(n, -1)
    targets_N = tokens_B_T[:, 1:].reshape(n)
    logp_N, ent_N = head_logprobs(
        model, head, hidden_N_H, targets_N, temperature=temperature,
        with_entropy=with_entropy, chunk_size=chunk_size,
    )  # fmt: skip

    zeros_B_1 = torch.zeros(b, 1, dtype=torch.float32, device=tokens_B_T.device)

    def assemble(values_N: Tensor) -> Tensor:
        rest = values_N.view(b, t - 1)
        out_B_T = torch.cat([zeros_B_1, rest], dim=1)
        if attention_mask_B_T is not None:
            out_B_T = torch.where(attention_mask_B_T.bool(), out_B_T, 0.0)
        return out_B_T

    return assemble(logp_N), assemble(ent_N) if with_entropy else None
