"""Per-token log-probabilities with each shared prompt prefix computed once per group.

In GRPO-style training every group's G rows start with the same prompt, and a plain forward
(`burnish.models.sequence_logprobs`) runs that prompt through the transformer G times, in the
forward and again in the backward pass. Here rows are grouped by a common leading run of token
ids; each group's prefix goes through the body once (``use_cache=True``, so its keys and values
keep their autograd history and LoRA on q/k/v/o gets its gradient through them), the cache is
indexed out to the group's rows, and only the suffixes are run on top of it with position ids
that continue the prefix. The LM head likewise sees each prefix position once.

The result is the same ``[B, T]`` log-probs and entropies as `sequence_logprobs` on the full
rows (equal up to float rounding, values and gradients): causal attention makes a token's
hidden state a function of the tokens up to it only, so sharing an identical prefix changes
nothing but the amount of work.

Two layouts run the same computation (`LAYOUTS`). ``padded``: the prefixes in one pass, then
every row's suffix, padded to the longest suffix, on top of the prefix cache. ``packed``: every
unique prefix and every row's suffix side by side in one sequence of real tokens only, with a
block attention mask (a suffix sees its own prefix and its own earlier tokens); one pass, no
padding, no cache copies, but attention over the whole packed sequence. ``auto`` estimates the
work of each (`packed_pays`) and runs the cheaper: packed wins when completions are short next
to the longest one (the padded suffix pass then computes mostly padding) and the packed
sequence is short enough for its attention not to dominate, and at small models, where the
padded layout's second pass costs more than its arithmetic (`SECOND_PASS_FLOPS`).

Departures and limits:
- Rows must be right-padded (described by their lengths), as `TrainBatch` rows are.
- Only the leading common prefix is shared: in multi-turn rows the later prompt segments are
  part of the suffix.
- Architectures whose attention is not plain full causal attention (sliding windows, hybrid
  caches) or attention kernels other than eager/SDPA are run with `sequence_logprobs` instead
  (see `supports_shared_prefix`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from burnish.models.fast_body import fast_body
from burnish.models.logprobs import (
    body_and_head,
    head_logprobs,  # the same per-chunk head maths as the plain path, so results agree
    position_ids_from_mask,
    sequence_logprobs,
)

__all__ = [
    "LAYOUTS",
    "PrefixPlan",
    "layout_flops",
    "packed_pays",
    "plan_shared_prefixes",
    "prompt_lengths",
    "shared_prefix_logprobs",
    "supports_shared_prefix",
    "take",
]

_SUPPORTED_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3"})
"""Architectures whose decoder takes a `DynamicCache` with padding holes and 2D masks."""
_SUPPORTED_ATTENTION = frozenset({None, "eager", "sdpa"})
"""Attention kernels that honour a 2D padding mask over cache + new tokens (and a 4D mask)."""
LAYOUTS = ("auto", "padded", "packed")
"""How `shared_prefix_logprobs` lays the rows out (see the module docstring)."""
PACKED_MAX_TOKENS = 4096
"""Longest packed sequence `auto` considers: its [N, N] attention mask must stay small."""
SECOND_PASS_FLOPS = 1.2e8
"""What the padded layout's second body pass costs per layer beyond its arithmetic, in the
forward FLOPs of `packed_pays`'s estimate: the pass's own operators, the prefix cache indexed out
to the rows, and their backward. Measured at burnish-tiny (4 layers, a demo step's 64 rows,
2 threads, `benchmarks/prefix_forward.py --layouts`, three runs): padded took 13.5-18.0 ms more
than packed per forward + backward where both estimates were equal, about 4 ms per layer; at
the ~1e11 FLOP/s two threads reach on large matmuls, with the backward costing twice the
forward, that is about 1.2e8 forward FLOPs per layer. It decides at small models; at 34m and 100m the
estimates differ by more than this and the arithmetic decides."""


@dataclass(frozen=True)
class PrefixPlan:
    """Which rows share which prefix. Rows shorter than 2 tokens take part in no pass."""

    rows_R: Tensor
    """[R] int64: the rows that are run (length >= 2), in increasing order."""
    prefix_of_R: Tensor
    """[R] int64: index of each run row's prefix among the U unique prefixes."""
    prefix_rows_U: Tensor
    """[U] int64: a row that holds each unique prefix."""
    prefix_len_U: Tensor
    """[U] int64: length of each unique prefix (>= 1, shorter than every row that uses it)."""

    @property
    def num_prefixes(self) -> int:
        return int(self.prefix_rows_U.numel())


def prompt_lengths(mask_B_T: Tensor, lengths_B: Tensor) -> Tensor:
    """Tokens before each row's first trained (sampled) token: the prompt that groups share.

    Args:
        mask_B_T: [B, T] loss mask, 1 on sampled tokens.
        lengths_B: [B] row lengths (rows with no sampled token count as all prompt).

    Returns:
        [B] int64.
    """
    has_B = mask_B_T.bool().any(-1)
    first_B = mask_B_T.bool().long().argmax(-1)
    return torch.where(has_B, first_B, lengths_B.long())


def plan_shared_prefixes(tokens_B_T: Tensor, lengths_B: Tensor, share_B: Tensor) -> PrefixPlan:
    """Group rows that start with the same ``share_B`` tokens and find each group's prefix.

    Rows whose first ``share`` token ids are identical form a group (a row alone is a group of
    one). The group's prefix is the longest run of token ids all its rows start with, cut so that
    every row keeps at least one token after it. ``share`` is clamped to ``[1, length - 1]``.

    Args:
        tokens_B_T: [B, T] right-padded token ids.
        lengths_B: [B] number of real tokens of each row.
        share_B: [B] how many leading tokens rows must have in common to be grouped (usually
            `prompt_lengths`).

    Returns:
        The `PrefixPlan`.
    """
    lengths = lengths_B.long().tolist()
    share = share_B.long().tolist()
    token_rows = tokens_B_T.tolist()
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, n in enumerate(lengths):
        if n < 2:
            continue
        k = min(max(share[i], 1), n - 1)
        groups.setdefault(tuple(token_rows[i][:k]), []).append(i)
    prefix_of: dict[int, int] = {}
    prefix_rows, prefix_lens = [], []
    for u, (key, rows) in enumerate(groups.items()):
        limit = min(lengths[i] for i in rows) - 1
        first = token_rows[rows[0]]
        p = len(key)
        while p < limit and all(token_rows[i][p] == first[p] for i in rows):
            p += 1
        prefix_rows.append(rows[0])
        prefix_lens.append(p)
        prefix_of.update({i: u for i in rows})
    run_rows = sorted(prefix_of)

    def as_tensor(values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long, device=tokens_B_T.device)

    return PrefixPlan(
        rows_R=as_tensor(run_rows),
        prefix_of_R=as_tensor([prefix_of[i] for i in run_rows]),
        prefix_rows_U=as_tensor(prefix_rows),
        prefix_len_U=as_tensor(prefix_lens),
    )


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """Whether `shared_prefix_logprobs` can run this model (else it uses the plain path).

    Needs full causal attention in every layer (no sliding window or hybrid cache) and an
    eager or SDPA attention kernel.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "model_type", None) not in _SUPPORTED_TYPES:
        return False
    if getattr(config, "_attn_implementation", None) not in _SUPPORTED_ATTENTION:
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return all(t == "full_attention" for t in layer_types)
    return not getattr(config, "sliding_window", None)


def take(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` along dim 0 (``index`` of any shape), with a deterministic backward.

    Many rows read the same prefix state, so the gradient sums repeated indices. Advanced
    indexing's backward (`index_put_` with accumulation) adds them with parallel atomic adds on
    a CPU, in whatever order the threads reach them: with 2 threads the same batch gave another
    gradient in its last bits at every repeat. `index_select`'s backward (`index_add_`) adds
    them in index order.
    """
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


def _select_cache_rows(cache, index: Tensor) -> None:
    """`DynamicCache.batch_select_indices` through `take` (see there), keeping autograd history."""
    for layer in cache.layers:
        if torch.is_tensor(getattr(layer, "keys", None)) and layer.keys.numel():
            layer.keys, layer.values = take(layer.keys, index), take(layer.values, index)


def _suffix_pass(body, tokens_B_T, lengths_B, plan: PrefixPlan, cache, prefix_mask_U_P):
    """Run every row's tokens after its prefix on top of the (expanded) prefix cache."""
    rows_R = plan.rows_R
    plen_R = plan.prefix_len_U[plan.prefix_of_R]  # [R]
    slen_R = lengths_B[rows_R].long() - plen_R  # [R], >= 1
    s_max = int(slen_R.max())
    offs_S = torch.arange(s_max, device=tokens_B_T.device)
    cols_R_S = (plen_R[:, None] + offs_S).clamp(max=tokens_B_T.shape[1] - 1)
    tokens_R_S = tokens_B_T[rows_R].gather(1, cols_R_S)
    valid_R_S = offs_S[None, :] < slen_R[:, None]
    _select_cache_rows(cache, plan.prefix_of_R)  # [U, ...] -> [R, ...], keeps autograd history
    attn = torch.cat([prefix_mask_U_P[plan.prefix_of_R], valid_R_S.long()], dim=1)
    out = body(
        input_ids=tokens_R_S,
        attention_mask=attn,
        position_ids=plen_R[:, None] + offs_S,
        cache=cache,
        use_cache=True,
    )
    return out.last_hidden_state, tokens_R_S, valid_R_S, plen_R, slen_R


def _suffix_lengths(plan: PrefixPlan, lengths_B: Tensor) -> Tensor:
    """[R] int64: each run row's length after its shared prefix."""
    return lengths_B[plan.rows_R].long() - plan.prefix_len_U[plan.prefix_of_R]


def layout_flops(
    model: torch.nn.Module, plan: PrefixPlan, lengths_B: Tensor
) -> tuple[float, float]:
    """Estimated forward FLOPs per layer of the (padded, packed) layouts for these rows.

    Per layer, a token costs about ``8H^2 + 6HI`` floating-point operations (two per
    multiply-add) in its projections and MLP, and each (query, key) pair of attention ``4H``.
    Padded: the prefixes padded to the longest, then every suffix padded to the longest suffix
    against prefix + suffix keys, plus `SECOND_PASS_FLOPS` for running two passes. Packed: only
    real tokens, but attention over the whole packed sequence.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    h = int(config.hidden_size)
    i = int(getattr(config, "intermediate_size", None) or 4 * h)
    slen_R = _suffix_lengths(plan, lengths_B)
    n = int(plan.prefix_len_U.sum() + slen_R.sum())
    u, r = plan.num_prefixes, int(plan.rows_R.numel())
    p_max, s_max = int(plan.prefix_len_U.max()), int(slen_R.max())
    per_token, per_pair = 8 * h * h + 6 * h * i, 4 * h
    padded = (u * p_max + r * s_max) * per_token + SECOND_PASS_FLOPS
    padded += (u * p_max * p_max + r * s_max * (p_max + s_max)) * per_pair
    packed = n * per_token + n * n * per_pair
    return float(padded), float(packed)


def packed_pays(model: torch.nn.Module, plan: PrefixPlan, lengths_B: Tensor) -> bool:
    """Whether the packed layout does less work than the padded one for these rows
    (`layout_flops`). Packed sequences longer than `PACKED_MAX_TOKENS` are never chosen."""
    n = int(plan.prefix_len_U.sum() + _suffix_lengths(plan, lengths_B).sum())
    if n > PACKED_MAX_TOKENS:
        return False
    padded, packed = layout_flops(model, plan, lengths_B)
    return packed < padded


def shared_prefix_logprobs(
    model: torch.nn.Module,
    tokens_B_T: Tensor,
    lengths_B: Tensor,
    share_B: Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    chunk_size: int = 512,
    layout: str = "auto",
) -> tuple[Tensor, Tensor | None]:
    """`sequence_logprobs` of right-padded rows, running each shared prefix once.

    Args:
        model: a transformers causal LM or a PEFT model around one.
        tokens_B_T: [B, T] int64 right-padded token ids.
        lengths_B: [B] real tokens per row (the attention mask is ``t < length``).
        share_B: [B] leading tokens a row must share with others to be grouped with them
            (`prompt_lengths` of the loss mask); see `plan_shared_prefixes`.
        temperature: the sampling temperature the tokens were drawn with (> 0).
        with_entropy: also return the entropies.
        chunk_size: token positions whose logits exist at once.
        layout: one of `LAYOUTS` (module docstring); ``auto`` asks `packed_pays`.

    Returns:
        ``(logp_B_T, entropy_B_T or None)`` as `sequence_logprobs` returns them (0 at position 0
        and at padding), float32, differentiable when grad is enabled.

    Raises:
        ValueError: on bad shapes, temperature, chunk size or layout.
    """
    if tokens_B_T.dim() != 2:
        raise ValueError(f"tokens_B_T must be [B, T], got shape {tuple(tokens_B_T.shape)}")
    B, T = tokens_B_T.shape
    if lengths_B.shape != (B,) or share_B.shape != (B,):
        raise ValueError(
            f"lengths_B {tuple(lengths_B.shape)} and share_B {tuple(share_B.shape)} must be ({B},)"
        )
    if B and (int(lengths_B.min()) < 0 or int(lengths_B.max()) > T):
        raise ValueError(f"lengths_B must lie in [0, {T}], got {lengths_B.tolist()}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if not supports_shared_prefix(model):
        attn = (torch.arange(T, device=tokens_B_T.device)[None, :] < lengths_B[:, None]).long()
        return sequence_logprobs(
            model,
            tokens_B_T,
            attention_mask_B_T=attn,
            temperature=temperature,
            with_entropy=with_entropy,
            chunk_size=chunk_size,
        )
    lengths_B = lengths_B.to(tokens_B_T.device)
    plan = plan_shared_prefixes(tokens_B_T, lengths_B, share_B)
    if plan.rows_R.numel() == 0:  # every row has < 2 tokens: nothing is predicted
        zeros_B_T = torch.zeros(B, T, dtype=torch.float32, device=tokens_B_T.device)
        return zeros_B_T, zeros_B_T.clone() if with_entropy else None
    packed = layout == "packed" or (layout == "auto" and packed_pays(model, plan, lengths_B))
    run = _packed_predictions if packed else _padded_predictions
    hidden_N_H, targets_N, src_B_T = run(model, tokens_B_T, lengths_B, plan)
    _, head = body_and_head(model)
    logp_N, ent_N = head_logprobs(
        model, head, hidden_N_H, targets_N, temperature=temperature,
        with_entropy=with_entropy, chunk_size=chunk_size,
    )  # fmt: skip

    def assemble(values_N: Tensor) -> Tensor:  # index N (past the end): a zero
        return take(
            torch.cat([values_N.float(), values_N.new_zeros(1, dtype=torch.float32)]), src_B_T
        )

    return assemble(logp_N), assemble(ent_N) if with_entropy else None


def _padded_predictions(model, tokens_B_T: Tensor, lengths_B: Tensor, plan: PrefixPlan):
    """The padded layout: `(hidden_N_H, targets_N, src_B_T)`, the N distinct predictions and,
    for every [B, T] slot, the prediction it reads (N: none, a zero).

    Longer than most functions here on purpose: the prefix pass, the KV-cache expansion and the
    suffix pass share index tensors and must be read together to check that every position's
    context is exactly what a plain forward would give it.
    """
    B, T = tokens_B_T.shape
    dev = tokens_B_T.device
    body, _ = body_and_head(model)
    p_max = int(plan.prefix_len_U.max())
    prefix_tokens_U_P = tokens_B_T[plan.prefix_rows_U, :p_max]
    prefix_mask_U_P = (torch.arange(p_max, device=dev)[None, :] < plan.prefix_len_U[:, None]).long()
    prefix_out = body(
        input_ids=prefix_tokens_U_P,
        attention_mask=prefix_mask_U_P,
        position_ids=position_ids_from_mask(prefix_mask_U_P),
        use_cache=True,
    )
    prefix_hidden_U_P_H = prefix_out.last_hidden_state
    suffix_hidden_R_S_H, suffix_tokens_R_S, suffix_valid_R_S, plen_R, slen_R = _suffix_pass(
        body, tokens_B_T, lengths_B, plan, prefix_out.cache, prefix_mask_U_P
    )

    # Hidden states that predict each distinct token once: prefix position p predicts prefix
    # token p + 1; a row's suffix token s is predicted by the prefix's last state (s = 0) or by
    # suffix state s - 1.
    R = plan.rows_R.numel()
    pre_valid_U_Q = (
        torch.arange(1, p_max, device=dev)[None, :] < plan.prefix_len_U[:, None]
    )  # Q = P - 1
    last_H = take(prefix_hidden_U_P_H.reshape(-1, prefix_hidden_U_P_H.shape[-1]),
                  plan.prefix_of_R * p_max + plen_R - 1)  # [R, H]  # fmt: skip
    suf_in_R_S_H = torch.cat([last_H[:, None], suffix_hidden_R_S_H[:, :-1]], dim=1)
    hidden_N_H = torch.cat(
        [prefix_hidden_U_P_H[:, :-1][pre_valid_U_Q], suf_in_R_S_H[suffix_valid_R_S]]
    )
    targets_N = torch.cat(
        [prefix_tokens_U_P[:, 1:][pre_valid_U_Q], suffix_tokens_R_S[suffix_valid_R_S]]
    )

    # Where each [B, T] slot reads from in the N values (index N: a zero for t = 0 and padding).
    n_pre = int(pre_valid_U_Q.sum())
    n_all = hidden_N_H.shape[0]
    pre_id_U_Q = pre_valid_U_Q.flatten().long().cumsum(0).view_as(pre_valid_U_Q) - 1
    suf_id_R_S = n_pre + suffix_valid_R_S.flatten().long().cumsum(0).view_as(suffix_valid_R_S) - 1
    t_R_T = torch.arange(T, device=dev)[None, :].expand(R, T)
    in_pre = (t_R_T >= 1) & (t_R_T < plen_R[:, None])
    in_suf = (t_R_T >= plen_R[:, None]) & (t_R_T < (plen_R + slen_R)[:, None])
    q_idx = (t_R_T - 1).clamp(0, max(p_max - 2, 0))
    s_idx = (t_R_T - plen_R[:, None]).clamp(0, suffix_tokens_R_S.shape[1] - 1)
    pre_src = pre_id_U_Q[plan.prefix_of_R].gather(1, q_idx) if p_max > 1 else q_idx
    src_R_T = torch.where(in_pre, pre_src, torch.where(in_suf, suf_id_R_S.gather(1, s_idx), n_all))
    src_B_T = torch.full((B, T), n_all, dtype=torch.long, device=dev)
    src_B_T[plan.rows_R] = src_R_T
    return hidden_N_H, targets_N, src_B_T


def _packed_predictions(model, tokens_B_T: Tensor, lengths_B: Tensor, plan: PrefixPlan):
    """The packed layout, returning what `_padded_predictions` returns.

    One sequence holds the U unique prefixes, then the R rows' suffixes (segments 0..U-1 and
    U..U+R-1), real tokens only, each at its own position id (its column in its row). A token
    attends to earlier tokens of its segment and, in a suffix, to its whole prefix segment.
    Predictions that are the same hidden state and target (a group's prefix positions) are
    computed once.
    """
    B, T = tokens_B_T.shape
    dev = tokens_B_T.device
    U, R = plan.num_prefixes, int(plan.rows_R.numel())
    plen_R = plan.prefix_len_U[plan.prefix_of_R]
    len_R = lengths_B[plan.rows_R].long()
    seg_len_K = torch.cat([plan.prefix_len_U, len_R - plen_R])  # K = U + R segments
    seg_row_K = torch.cat([plan.prefix_rows_U, plan.rows_R])
    seg_start_K = torch.cat([torch.zeros_like(plan.prefix_len_U), plen_R])
    seg_sees_K = torch.cat([torch.full_like(plan.prefix_len_U, -1), plan.prefix_of_R])
    offset_K = seg_len_K.cumsum(0) - seg_len_K
    seg_N = torch.repeat_interleave(torch.arange(U + R, device=dev), seg_len_K)
    n = int(seg_N.numel())
    col_N = seg_start_K[seg_N] + torch.arange(n, device=dev) - offset_K[seg_N]
    causal_N_N = torch.ones(n, n, dtype=torch.bool, device=dev).tril()
    allowed_N_N = (seg_N[:, None] == seg_N[None, :]) & causal_N_N
    allowed_N_N |= seg_sees_K[seg_N][:, None] == seg_N[None, :]
    ids_1_N, mask_1_1_N_N, pos_1_N = (
        tokens_B_T[seg_row_K[seg_N], col_N][None],
        allowed_N_N[None, None],
        col_N[None],
    )
    fast = fast_body(model)  # the same arithmetic without the module calls, where it applies
    if fast is not None:
        hidden_N_H = fast(ids_1_N, mask_1_1_N_N, pos_1_N)[0]
    else:
        body, _ = body_and_head(model)
        hidden_N_H = body(
            input_ids=ids_1_N, attention_mask=mask_1_1_N_N, position_ids=pos_1_N, use_cache=False
        ).last_hidden_state[0]

    # Slot (row r, t) is predicted by the packed state of position t - 1 of that row: in the
    # prefix segment while t - 1 < its prefix length, else in the row's own suffix segment.
    t_R_T = torch.arange(T, device=dev)[None, :].expand(R, T)
    valid_R_T = (t_R_T >= 1) & (t_R_T < len_R[:, None])
    in_prefix_R_T = t_R_T - 1 < plen_R[:, None]
    k_R_T = torch.where(
        in_prefix_R_T,
        offset_K[plan.prefix_of_R][:, None] + t_R_T - 1,
        offset_K[U:][:, None] + t_R_T - 1 - plen_R[:, None],
    )
    vocab = int(tokens_B_T.max()) + 1
    key_F = (k_R_T * vocab + tokens_B_T[plan.rows_R])[valid_R_T]
    unique_N, inverse_F = torch.unique(key_F, return_inverse=True)
    src_B_T = torch.full((B, T), unique_N.numel(), dtype=torch.long, device=dev)
    rows_F = plan.rows_R[:, None].expand(R, T)[valid_R_T]
    src_B_T[rows_F, t_R_T[valid_R_T]] = inverse_F
    return take(hidden_N_H, unique_N // vocab), unique_N % vocab, src_B_T
