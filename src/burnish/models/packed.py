"""Log-probs of packed rows: several sequences in one row, none attending to another.

A packed row holds segments (transcripts) side by side. The attention mask is block-diagonal
and causal within each segment, and position ids restart at 0 in each segment, so every
segment's log-probs equal those it would have alone in its own row (up to float rounding; the
tests check it). Padding (segment 0) attends only to itself, so no row of the attention is
empty (an all-masked softmax row would be NaN and poison the backward pass).
"""

from __future__ import annotations

import torch
from torch import Tensor

from burnish.models.logprobs import body_and_head, head_logprobs

__all__ = ["packed_attention_mask", "packed_logprobs"]


def packed_attention_mask(segments_B_T: Tensor) -> Tensor:
    """`[B, 1, T, T]` bool: query t may attend key s iff same segment (not padding) and s ≤ t,
    or s = t."""
    T = segments_B_T.shape[1]
    causal_T_T = torch.ones(T, T, dtype=torch.bool, device=segments_B_T.device).tril()
    same_B_T_T = segments_B_T[:, :, None] == segments_B_T[:, None, :]
    real_B_1_T = (segments_B_T > 0)[:, None, :]
    eye_T_T = torch.eye(T, dtype=torch.bool, device=segments_B_T.device)
    return ((same_B_T_T & real_B_1_T & causal_T_T) | eye_T_T)[:, None]


def packed_logprobs(
    model: torch.nn.Module,
    tokens_B_T: Tensor,
    segments_B_T: Tensor,
    positions_B_T: Tensor,
    *,
    chunk_size: int = 512,
) -> Tensor:
    """``logp[:, t] = log p(tokens[:, t] | earlier tokens of its segment)``: `[B, T]` float32,
    0 at each row's first position and at padding. Differentiable when grad is enabled.

    The value at a segment's first token is predicted from the previous segment: callers mask it
    (`burnish.train.sft_data.pack_rows` does).
    """
    b, t = tokens_B_T.shape
    body, head = body_and_head(model)
    hidden_B_T_H = body(
        input_ids=tokens_B_T,
        attention_mask=packed_attention_mask(segments_B_T),
        position_ids=positions_B_T,
        use_cache=False,
    ).last_hidden_state
    n = b * (t - 1)
    logp_N, _ = head_logprobs(
        model,
        head,
        hidden_B_T_H[:, :-1].reshape(n, -1),
        tokens_B_T[:, 1:].reshape(n),
        chunk_size=chunk_size,
    )
    out_B_T = torch.cat([torch.zeros(b, 1, device=tokens_B_T.device), logp_N.view(b, t - 1)], 1)
    return torch.where(segments_B_T > 0, out_B_T, 0.0)
