"""Batched autoregressive sampling with a KV cache: the engine behind `LocalSampler`.

A small decode loop over a transformers causal LM rather than ``model.generate``: prompts are
left-padded (attention mask and position ids count only real tokens), the prompt is run once with
``logits_to_keep=1``, then one token per step is fed with the KV cache. Rows that finished are
dropped from the batch (and the cache) once a quarter of the batch is done, so a few long
completions do not keep the whole batch running.

Each row carries its own sampling parameters and its own random stream: the uniform numbers that
pick its tokens come from a generator seeded for that row alone, so a row's sample does not depend
on which other rows share its batch (up to floating-point differences between batch shapes).

Reported logprobs are those of the distribution the token was drawn from: ``log_softmax`` of the
logits divided by the temperature, after top-k and then top-p truncation (renormalised over the
kept tokens). At temperature 1 without truncation this is the model's own logprob. For greedy
rows (temperature 0) the model's logprob at temperature 1 is reported (the point mass that greedy
decoding actually samples from would say 0 for every token). A row that asks for
``top_logprobs`` alternatives gets the most likely tokens of that same distribution.

Rows may name their LoRA adapter (`GenerationRow.adapter`): the batch then runs as a PEFT
mixed-adapter batch, each row through its own adapter in the same forward passes
(`burnish.models.lora.RowAdapters`). When no row names one, the model runs as it is (its active
adapter, if any), with its LoRA layers merged for the decode where that pays
(`burnish.models.lean_lora.merged_lora`: one product per layer instead of three; logprobs
within a few 1e-5 of the unmerged layers'), and, for a Llama, Qwen2 or Mistral model whose
layers allow it, the prefill and each decode step run as `burnish.models.fast_decode`'s
straight-line steps (transformers' arithmetic without its module calls).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from burnish.models.fast_decode import fast_decoder
from burnish.models.kv_cache import reserved_cache
from burnish.models.lean_lora import merged_lora
from burnish.models.logprobs import position_ids_from_mask
from burnish.models.lora import RowAdapters

__all__ = [
    "GenerationRow",
    "RowResult",
    "generate_rows",
    "sample_next_tokens",
    "sampling_logprobs",
    "top_alternatives",
]


@dataclass(frozen=True)
class GenerationRow:
    """One completion to sample: a prompt with its sampling parameters and random seed."""

    prompt: tuple[int, ...]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop_token_ids: tuple[int, ...] = ()
    """Tokens that end the row (the tokenizer's EOS must be included by the caller)."""
    stop: tuple[str, ...] = ()
    seed: int = 0
    adapter: str | None = None
    """PEFT adapter this row runs with (`burnish.models.lora.BASE_ROW` for the base model); None
    runs the model as it is. A batch names an adapter for every row or for none."""
    top_logprobs: int = 0
    """How many of the most likely tokens (with their logprobs) to report at every step."""


@dataclass
class RowResult:
    """The sampled tokens of one row, their logprobs and why the row ended."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "length"
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    """Per sampled token, the row's ``top_logprobs`` most likely ``(token, logprob)`` pairs of
    the distribution it was drawn from, most likely first (empty when none were asked for)."""


def sampling_logprobs(
    logits_B_V: Tensor, temperature_B: Tensor, top_p_B: Tensor, top_k_B: Tensor
) -> tuple[Tensor, Tensor | None]:
    """The distribution each row samples from: temperature, then top-k, then top-p.

    Args:
        logits_B_V: [B, V] float32 next-token logits.
        temperature_B: [B] float; 0 (greedy) is treated as 1 here.
        top_p_B: [B] float in (0, 1]; 1 keeps everything.
        top_k_B: [B] int64; 0 keeps everything.

    Returns:
        ``(logp_B_V, order_B_V)``: logprobs with ``-inf`` for truncated tokens; when any row
        truncates they are sorted by decreasing logit and ``order_B_V`` holds the vocabulary id
        of each column, else they are in vocabulary order and ``order_B_V`` is None.
    """
    v = logits_B_V.shape[-1]
    greedy_B = temperature_B <= 0
    scaled_B_V = logits_B_V / torch.where(greedy_B, 1.0, temperature_B)[:, None]
    truncate = bool(((top_k_B > 0) & (top_k_B < v)).any() or (top_p_B < 1).any())
    if not truncate:
        return torch.log_softmax(scaled_B_V, dim=-1), None
    sorted_B_V, order_B_V = scaled_B_V.sort(dim=-1, descending=True)
    ranks_V = torch.arange(v, device=logits_B_V.device)
    k_B = torch.where(top_k_B > 0, top_k_B, v)
    keep_B_V = ranks_V[None] < k_B[:, None]
    probs_B_V = torch.softmax(sorted_B_V.masked_fill(~keep_B_V, float("-inf")), dim=-1)
    # top-p: keep a token while the mass of the tokens ranked above it is below top_p
    keep_B_V &= (probs_B_V.cumsum(-1) - probs_B_V) < top_p_B[:, None]
    return torch.log_softmax(sorted_B_V.masked_fill(~keep_B_V, float("-inf")), dim=-1), order_B_V


def sample_next_tokens(
    logits_B_V: Tensor,
    temperature_B: Tensor,
    top_p_B: Tensor,
    top_k_B: Tensor,
    uniform_B: Tensor,
) -> tuple[Tensor, Tensor]:
    """Draw one token per row by inverse-CDF sampling and return it with its logprob.

    Args:
        logits_B_V: [B, V] float32 next-token logits.
        temperature_B: [B] float; 0 means greedy (argmax).
        top_p_B: [B] float in (0, 1]; 1 keeps everything.
        top_k_B: [B] int64; 0 keeps everything.
        uniform_B: [B] float in [0, 1), the row's random number for this step.

    Returns:
        ``(tokens_B, logp_B)``: int64 tokens and float32 logprobs under the (truncated,
        temperature-scaled) distribution they were drawn from; model logprobs for greedy rows.
    """
    v = logits_B_V.shape[-1]
    greedy_B = temperature_B <= 0
    logp_B_V, order_B_V = sampling_logprobs(logits_B_V, temperature_B, top_p_B, top_k_B)
    cdf_B_V = logp_B_V.exp().cumsum(-1)
    target_B1 = (uniform_B.to(cdf_B_V.dtype) * cdf_B_V[:, -1])[:, None]
    # right=True: the first index whose cdf exceeds u, so a zero-probability token is never drawn
    idx_B = torch.searchsorted(cdf_B_V, target_B1, right=True).squeeze(-1).clamp_(max=v - 1)
    logp_B = logp_B_V.gather(-1, idx_B[:, None]).squeeze(-1)
    tokens_B = idx_B if order_B_V is None else order_B_V.gather(-1, idx_B[:, None]).squeeze(-1)
    if bool(greedy_B.any()):
        argmax_B = logits_B_V.argmax(-1)
        model_logp_B = torch.log_softmax(logits_B_V, -1).gather(-1, argmax_B[:, None]).squeeze(-1)
        tokens_B = torch.where(greedy_B, argmax_B, tokens_B)
        logp_B = torch.where(greedy_B, model_logp_B, logp_B)
    return tokens_B, logp_B


def top_alternatives(
    logits_B_V: Tensor, temperature_B: Tensor, top_p_B: Tensor, top_k_B: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """The ``k`` most likely tokens of each row's sampling distribution (the model's own at
    temperature 1 for greedy rows, matching the logprob `sample_next_tokens` reports).

    Returns:
        ``(ids_B_K, logp_B_K)``, most likely first; truncated tokens carry ``-inf``.
    """
    k = min(k, logits_B_V.shape[-1])
    greedy_B = temperature_B <= 0
    logp_B_V, order_B_V = sampling_logprobs(logits_B_V, temperature_B, top_p_B, top_k_B)
    if order_B_V is not None:  # back to vocabulary order
        logp_B_V = torch.empty_like(logp_B_V).scatter_(-1, order_B_V, logp_B_V)
    if bool(greedy_B.any()):
        logp_B_V = torch.where(greedy_B[:, None], torch.log_softmax(logits_B_V, -1), logp_B_V)
    logp_B_K, ids_B_K = logp_B_V.topk(k, dim=-1)
    return ids_B_K, logp_B_K


def _forward_keywords(model: torch.nn.Module) -> tuple[str, bool]:
    """The cache keyword of this model's forward ("cache" or "past_key_values") and whether it
    takes ``logits_to_keep``."""
    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    return cache_kw, "logits_to_keep" in params


def _stop_string_hit(tokenizer, tokens: list[int], stops: tuple[str, ...], window: int) -> bool:
    text = tokenizer.decode(tokens[-window:], skip_special_tokens=False)
    return any(s in text for s in stops)


def _row_adapters(model: torch.nn.Module, rows: list[GenerationRow]):
    """`RowAdapters` over the rows' adapters, or, when no row names one, the model's LoRA
    layers merged for the decode (`merged_lora`; it yields None here)."""
    named = [r.adapter is not None for r in rows]
    if not any(named):
        return _merged(model, len(rows) * max(r.max_new_tokens for r in rows))
    if not all(named):
        raise ValueError(
            "a batch names the adapter of every row or of none: "
            f"{named.count(False)} of {len(rows)} rows have adapter=None (use BASE_ROW for the "
            "base model)"
        )
    return RowAdapters(model, [r.adapter for r in rows])  # type: ignore[misc]


@contextlib.contextmanager
def _merged(model: torch.nn.Module, tokens: int):
    with merged_lora(model, tokens):
        yield None


class _Batch:
    """Mutable state of the rows still decoding."""

    def __init__(self, rows: list[GenerationRow], pad_id: int, device: torch.device) -> None:
        b = len(rows)
        width = max(len(r.prompt) for r in rows)
        self.ids_B_L = torch.full((b, width), pad_id, dtype=torch.long)
        self.mask_B_L = torch.zeros((b, width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r.prompt)
            self.ids_B_L[i, width - n :] = torch.tensor(r.prompt, dtype=torch.long)
            self.mask_B_L[i, width - n :] = 1
        self.ids_B_L, self.mask_B_L = self.ids_B_L.to(device), self.mask_B_L.to(device)
        self.pos_B = position_ids_from_mask(self.mask_B_L)[:, -1]
        self.rows = torch.arange(b)  # original row index of every live row
        self.temperature_B = torch.tensor([r.temperature for r in rows], device=device)
        self.top_p_B = torch.tensor([r.top_p for r in rows], device=device)
        self.top_k_B = torch.tensor([r.top_k for r in rows], dtype=torch.long, device=device)
        self.top_n = max(r.top_logprobs for r in rows)  # alternatives to compute per step
        steps = max(r.max_new_tokens for r in rows)
        self.uniform_B_S = torch.stack(
            [torch.rand(steps, generator=torch.Generator().manual_seed(r.seed)) for r in rows]
        ).to(device)

    def keep(self, live: Tensor, cache) -> None:
        """Drop finished rows from every per-row tensor and from the KV cache."""
        idx = live.to(self.mask_B_L.device)
        cache.batch_select_indices(idx)
        self.mask_B_L = self.mask_B_L[idx]
        self.pos_B = self.pos_B[idx]
        self.rows = self.rows[live.cpu()]
        self.temperature_B, self.top_p_B = self.temperature_B[idx], self.top_p_B[idx]
        self.top_k_B, self.uniform_B_S = self.top_k_B[idx], self.uniform_B_S[idx]

    def alternatives(self, logits_B_V: Tensor) -> list[list[tuple[int, float]]] | None:
        """Every live row's top alternatives at this step (None when no row asked)."""
        if self.top_n == 0:
            return None
        ids_B_K, logp_B_K = top_alternatives(
            logits_B_V, self.temperature_B, self.top_p_B, self.top_k_B, self.top_n
        )
        return [list(zip(i, lp)) for i, lp in zip(ids_B_K.tolist(), logp_B_K.tolist())]


def _prefill(model, batch: _Batch, rows: list[GenerationRow], adapters, keep_kw: dict):
    """Run each distinct (prompt, adapter) once (a group's G rows share theirs), then copy its
    KV cache and last logits to every row that asked for it. Returns ``(cache, logits_B_V,
    fast)``, ``fast`` the `FastDecoder` that ran the prefill and runs the decode steps, or None.

    The cache is a `reserved_cache` (decode steps write in place) where the model allows one."""
    device = batch.ids_B_L.device
    cache_kw, _ = _forward_keywords(model)
    cache = reserved_cache(model, extra=batch.uniform_B_S.shape[1])
    cache_arg = {} if cache is None else {cache_kw: cache}
    first: dict[tuple, int] = {}  # (prompt, adapter) -> first row that has it
    for i, r in enumerate(rows):
        first.setdefault((r.prompt, r.adapter), i)
    slot = {key: u for u, key in enumerate(first)}
    row_to_unique = torch.tensor([slot[(r.prompt, r.adapter)] for r in rows])
    first_row = torch.tensor(list(first.values()), device=device)
    if adapters is not None:
        adapters.names = [rows[i].adapter for i in first.values()]
    fast = None if adapters is not None else fast_decoder(model, cache)
    ids_U_L, mask_U_L = batch.ids_B_L[first_row], batch.mask_B_L[first_row]
    pos_U_L = position_ids_from_mask(batch.mask_B_L)[first_row]
    if fast is not None:
        logits_U_V = fast.prefill(ids_U_L, mask_U_L, pos_U_L)
    else:
        out = model(
            input_ids=ids_U_L,
            attention_mask=mask_U_L,
            position_ids=pos_U_L,
            use_cache=True,
            **keep_kw,
            **cache_arg,
        )
        cache = getattr(out, "cache", None) or out.past_key_values
        logits_U_V = out.logits[:, -1].float()
    logits_B_V = logits_U_V[row_to_unique.to(device)]
    if len(first) < len(rows):
        cache.batch_select_indices(row_to_unique.to(device))
    if adapters is not None:
        adapters.names = [r.adapter for r in rows]
    return cache, logits_B_V, fast


@torch.inference_mode()
def generate_rows(
    model: torch.nn.Module,
    tokenizer,
    rows: list[GenerationRow],
    *,
    pad_id: int,
    on_token: Callable[[int, RowResult], None] | None = None,
) -> list[RowResult]:
    """Sample every row in one batch with a KV cache (the caller sets eval mode and adapters).

    Args:
        model: a transformers causal LM (for a PEFT model, pass its base model: the LoRA layers
            live inside it).
        tokenizer: used only to decode completion tails for stop strings.
        rows: what to sample; prompts must be non-empty.
        pad_id: token id used for left padding (masked out).
        on_token: called as ``on_token(i, result)`` after row ``i`` got a token (its result
            already holds it, and its finish reason once it ended); for streaming.

    Returns:
        One `RowResult` per row, in order.

    Raises:
        ValueError: if some rows name an adapter and others do not.

    One function on purpose: the decode loop's state (cache, positions, finished rows, per-row
    generators) is shared by every step of the loop, and splitting it would pass all of it around.
    """
    device = next(model.parameters()).device
    cache_kw, has_keep = _forward_keywords(model)
    batch = _Batch(rows, pad_id, device)
    results = [RowResult() for _ in rows]
    done = [False] * len(rows)
    stop_sets = [frozenset(r.stop_token_ids) for r in rows]
    windows = [2 * max((len(s) for s in r.stop), default=0) + 4 for r in rows]
    keep_kw = {"logits_to_keep": 1} if has_keep else {}
    with _row_adapters(model, rows) as adapters:
        cache, logits_B_V, fast = _prefill(model, batch, rows, adapters, keep_kw)
        steps = batch.uniform_B_S.shape[1]
        for step in range(steps):
            tokens_B, logp_B = sample_next_tokens(
                logits_B_V, batch.temperature_B, batch.top_p_B, batch.top_k_B,
                batch.uniform_B_S[:, step],
            )  # fmt: skip
            top_B = batch.alternatives(logits_B_V)
            live = []
            for j, (row_i, tok, lp) in enumerate(
                zip(batch.rows.tolist(), tokens_B.tolist(), logp_B.tolist())
            ):
                if done[row_i]:
                    continue
                res, row = results[row_i], rows[row_i]
                res.tokens.append(tok)
                res.logprobs.append(lp)
                if top_B is not None and row.top_logprobs:
                    res.top_logprobs.append(top_B[j][: row.top_logprobs])
                if tok in stop_sets[row_i] or (
                    row.stop and _stop_string_hit(tokenizer, res.tokens, row.stop, windows[row_i])
                ):
                    res.finish_reason = "stop"
                    done[row_i] = True
                elif len(res.tokens) < row.max_new_tokens:
                    live.append(j)
                else:
                    done[row_i] = True
                if on_token is not None:
                    on_token(row_i, res)
            if not live:
                break
            if len(live) < len(batch.rows):
                live_t = torch.tensor(live, dtype=torch.long)
                if len(batch.rows) - len(live) >= max(1, len(batch.rows) // 4):
                    batch.keep(live_t, cache)
                    tokens_B = tokens_B[live_t.to(tokens_B.device)]
                    if adapters is not None:
                        adapters.names = [rows[i].adapter for i in batch.rows.tolist()]
            # Finished rows that were not dropped keep decoding; their extra tokens are ignored.
            batch.mask_B_L = torch.cat(
                [batch.mask_B_L, batch.mask_B_L.new_ones(len(tokens_B), 1)], 1
            )
            batch.pos_B = batch.pos_B + 1
            if fast is not None:
                logits_B_V = fast(tokens_B, batch.mask_B_L, batch.pos_B)
                continue
            out = model(
                input_ids=tokens_B[:, None],
                attention_mask=batch.mask_B_L,
                position_ids=batch.pos_B[:, None],
                use_cache=True,
                **{cache_kw: cache},
            )
            logits_B_V = out.logits[:, -1].float()
    return results
