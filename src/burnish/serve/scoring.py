"""Prompt log-probs (vLLM's ``prompt_logprobs``): how likely the model finds each prompt token.

For every position ``t >= 1`` of a prompt: the log-prob of the prompt's token given the tokens
before it, its rank (1 + the number of tokens the model finds more likely, counting ties as
vLLM does: the number of tokens at least as likely), and the ``k`` most likely tokens there.
Always the raw model at temperature 1, as vLLM reports prompt log-probs.

Prompts are right-padded into one batch per call (causal attention: padding after a row's last
token cannot change it), each row through its own adapter (`burnish.models.lora.RowAdapters`),
and the LM head runs on a few positions at a time so only a ``[chunk, V]`` block of logits exists.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from burnish.models.logprobs import body_and_head
from burnish.models.lora import RowAdapters

__all__ = ["PromptPosition", "prompt_logprobs"]


@dataclass(frozen=True)
class PromptPosition:
    """The scores of one prompt position."""

    token: int
    logprob: float
    rank: int
    top: tuple[tuple[int, float], ...]
    """The ``k`` most likely tokens at this position with their logprobs, most likely first."""


@torch.inference_mode()
def prompt_logprobs(
    model: torch.nn.Module,
    prompts: list[list[int]],
    *,
    k: int,
    adapters: list[str] | None = None,
    pad_id: int = 0,
    chunk_size: int = 256,
) -> list[list[PromptPosition]]:
    """Score every prompt token after the first (see the module docstring).

    Args:
        model: a transformers causal LM (the base model of a PEFT model).
        prompts: token ids, each at least one token long.
        k: most likely alternatives to report per position (0: none).
        adapters: the adapter of each prompt (`RowAdapters` names), or None for the model as
            it is.
        pad_id: token id of the right padding (masked out).
        chunk_size: positions whose logits exist at once.

    Returns:
        Per prompt, one `PromptPosition` for each of its tokens after the first.
    """
    body, head = body_and_head(model)
    width = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    ids_B_T = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask_B_T = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids_B_T[i, : len(p)] = torch.tensor(p, dtype=torch.long)
        mask_B_T[i, : len(p)] = 1
    ids_B_T, mask_B_T = ids_B_T.to(device), mask_B_T.to(device)
    scope = RowAdapters(model, adapters) if adapters else contextlib.nullcontext()
    with scope:
        hidden_B_T_H = body(
            input_ids=ids_B_T, attention_mask=mask_B_T, use_cache=False
        ).last_hidden_state
        cap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
        out = []
        for i, p in enumerate(prompts):
            positions = []
            for s in range(0, len(p) - 1, chunk_size):
                hidden_N_H = hidden_B_T_H[i, s : min(len(p) - 1, s + chunk_size)]
                logits_N_V = head(hidden_N_H).float()
                if cap:
                    logits_N_V = torch.tanh(logits_N_V / cap) * cap
                positions += _positions(torch.log_softmax(logits_N_V, -1), p[s + 1 :], k)
            out.append(positions)
    return out


def _positions(logp_N_V: torch.Tensor, targets: list[int], k: int) -> list[PromptPosition]:
    """`PromptPosition`s of N positions from their log-softmax rows and target tokens."""
    n = logp_N_V.shape[0]
    targets_N = torch.tensor(targets[:n], dtype=torch.long, device=logp_N_V.device)
    logp_N = logp_N_V.gather(-1, targets_N[:, None]).squeeze(-1)
    rank_N = (logp_N_V >= logp_N[:, None]).sum(-1)
    if k > 0:
        top_logp_N_K, top_ids_N_K = logp_N_V.topk(min(k, logp_N_V.shape[-1]), dim=-1)
        tops = [tuple(zip(i, lp)) for i, lp in zip(top_ids_N_K.tolist(), top_logp_N_K.tolist())]
    else:
        tops = [()] * n
    return [
        PromptPosition(token=t, logprob=lp, rank=r, top=top)
        for t, lp, r, top in zip(targets_N.tolist(), logp_N.tolist(), rank_N.tolist(), tops)
    ]
