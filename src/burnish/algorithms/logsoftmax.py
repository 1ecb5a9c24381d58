"""Memory-safe log-probabilities and entropies from logits.

`selective_log_softmax` returns ``log softmax(logits / T)[index]`` and `entropy_from_logits` the
entropy of ``softmax(logits / T)``, both in float32, for logits of any float dtype.

The naive ``torch.log_softmax(logits.float(), -1).gather(...)`` makes a float32 copy of the whole
``[..., V]`` tensor and autograd keeps it alive until the backward pass. With a 150k vocabulary and
a few thousand tokens that copy alone is several gigabytes. Here the rows of the flattened leading
dims are processed in chunks of ``chunk_size``: the forward pass keeps only one float32 row per
token (the log-normaliser), and the backward pass recomputes each chunk's softmax in float32 and
writes the gradient straight into a tensor of the logits' own dtype. Peak extra memory is
``O(chunk_size * V)`` float32 instead of ``O(N * V)``.

Departures from the usual one-liner: the gradient is exact but computed by a hand-written backward
(double backward is not supported), and the temperature division happens inside the chunk, so no
scaled copy of the logits is made either (docs/algorithms.md §13 item 9: logprobs and entropies
must use the sampling temperature).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

__all__ = ["entropy_from_logits", "selective_log_softmax"]


def _as_3d(logits: Tensor) -> Tensor:
    """View ``[..., V]`` as ``[A, T, V]`` without copying when the layout allows it.

    A contiguous tensor becomes ``[1, N, V]`` (one long run of rows). A sliced tensor such as
    ``logits[:, :-1]`` cannot be flattened as a view, so it stays ``[B, T, V]`` and is walked row
    block by row block.
    """
    vocab = logits.shape[-1]
    try:
        return logits.view(1, -1, vocab)
    except RuntimeError:
        return logits.reshape(-1, logits.shape[-2], vocab)


def _blocks(a_dim: int, t_dim: int, chunk_size: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(a, t0, t1, flat_start)`` row blocks of at most ``chunk_size`` rows."""
    for a in range(a_dim):
        for t0 in range(0, t_dim, chunk_size):
            t1 = min(t0 + chunk_size, t_dim)
            yield a, t0, t1, a * t_dim + t0


def _scaled_f32(rows: Tensor, temperature: float) -> Tensor:
    """A new float32 tensor ``rows / temperature`` that the caller may overwrite in place."""
    if rows.dtype == torch.float32:
        return rows / temperature if temperature != 1.0 else rows.clone()
    z = rows.float()
    return z.div_(temperature) if temperature != 1.0 else z


def _check(logits: Tensor, temperature: float, chunk_size: int) -> None:
    if not logits.is_floating_point() or logits.dim() < 1:
        raise ValueError(
            f"logits must be a floating tensor [..., V]; got dtype={logits.dtype}, "
            f"shape={tuple(logits.shape)}"
        )
    check_knobs(temperature, chunk_size)


def check_knobs(temperature: float, chunk_size: int) -> None:
    """Raise `ValueError` unless `temperature > 0` and `chunk_size >= 1`."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1; got {chunk_size}")


class _SelectiveLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, temperature: float, chunk_size: int):  # type: ignore[override]
        x3 = _as_3d(logits)
        a_dim, t_dim, _ = x3.shape
        idx_flat = index.reshape(-1)
        n = a_dim * t_dim
        out = torch.empty(n, dtype=torch.float32, device=logits.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for a, t0, t1, s in _blocks(a_dim, t_dim, chunk_size):
            z = _scaled_f32(x3[a, t0:t1], temperature)  # [c, V] float32, one chunk only
            lse_c = torch.logsumexp(z, dim=-1)  # [c]
            e = s + (t1 - t0)
            lse[s:e] = lse_c
            out[s:e] = z.gather(-1, idx_flat[s:e, None]).squeeze(-1) - lse_c
        ctx.save_for_backward(logits, index, lse)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        return out.view(index.shape)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        logits, index, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        x3 = _as_3d(logits)
        a_dim, t_dim, vocab = x3.shape
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        grad_flat = grad.view(-1, vocab)
        g_flat = grad_out.reshape(-1).float()
        idx_flat = index.reshape(-1)
        for a, t0, t1, s in _blocks(a_dim, t_dim, chunk_size):
            e = s + (t1 - t0)
            g = g_flat[s:e, None]  # [c, 1]
            # d/dz_j [z_i - lse] = 1[j = i] - p_j ; every step in place on one float32 chunk
            gz = _scaled_f32(x3[a, t0:t1], temperature).sub_(lse[s:e, None]).exp_().mul_(-g)
            gz.scatter_add_(-1, idx_flat[s:e, None], g)
            if temperature != 1.0:
                gz.div_(temperature)
            grad_flat[s:e].copy_(gz)
        return grad, None, None, None


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float, chunk_size: int):  # type: ignore[override]
        x3 = _as_3d(logits)
        a_dim, t_dim, _ = x3.shape
        n = a_dim * t_dim
        ent = torch.empty(n, dtype=torch.float32, device=logits.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        for a, t0, t1, s in _blocks(a_dim, t_dim, chunk_size):
            e = s + (t1 - t0)
            z = _scaled_f32(x3[a, t0:t1], temperature)
            lse_c = torch.logsumexp(z, dim=-1)
            logp = z.sub_(lse_c[:, None])
            p = torch.exp(logp)
            # p * log p with the 0 * (-inf) of masked (-inf) logits taken as 0
            logp.masked_fill_(p == 0, 0.0)
            lse[s:e] = lse_c
            ent[s:e] = -p.mul_(logp).sum(-1)
        ctx.save_for_backward(logits, lse, ent)
        ctx.temperature = temperature
        ctx.chunk_size = chunk_size
        return ent.view(logits.shape[:-1])

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        logits, lse, ent = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        x3 = _as_3d(logits)
        a_dim, t_dim, vocab = x3.shape
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        grad_flat = grad.view(-1, vocab)
        g_flat = grad_out.reshape(-1).float()
        for a, t0, t1, s in _blocks(a_dim, t_dim, chunk_size):
            e = s + (t1 - t0)
            logp = _scaled_f32(x3[a, t0:t1], temperature).sub_(lse[s:e, None])
            p = torch.exp(logp)
            # dH/dz_j = -p_j (log p_j + H), taken as 0 where p_j = 0 (masked -inf logits)
            inner = logp.add_(ent[s:e, None]).masked_fill_(p == 0, 0.0)
            gz = p.mul_(inner).mul_(-g_flat[s:e, None])
            if temperature != 1.0:
                gz.div_(temperature)
            grad_flat[s:e].copy_(gz)
        return grad, None, None


def selective_log_softmax(
    logits: Tensor, index: Tensor, *, temperature: float = 1.0, chunk_size: int = 1024
) -> Tensor:
    """Log-probability of the chosen token, ``log softmax(logits / temperature)[index]``.

    Equivalent to ``torch.log_softmax(logits.float() / temperature, -1).gather(-1,
    index[..., None]).squeeze(-1)``, but never materialises a float32 copy of the whole logits
    tensor, neither in the forward pass nor saved for the backward pass.

    Args:
        logits: ``[..., V]`` logits of any float dtype (fp32, bf16, fp16).
        index: ``[...]`` int64 token ids, same leading shape as ``logits``.
        temperature: sampling temperature the tokens were drawn with (> 0).
        chunk_size: rows of the flattened leading dims processed at once; bounds the float32
            scratch memory to about ``chunk_size * V * 4`` bytes (times a small constant).

    Returns:
        ``[...]`` float32 log-probabilities. Differentiable with respect to ``logits`` (the
        gradient has the logits' dtype); double backward is not supported.

    Raises:
        ValueError: on a non-float ``logits``, a non-int64 ``index`` or mismatched shapes, a
            temperature <= 0 or a chunk_size < 1.
    """
    _check(logits, temperature, chunk_size)
    if index.dtype != torch.long:
        raise ValueError(f"index must be int64 (torch.long); got {index.dtype}")
    if tuple(index.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"index shape {tuple(index.shape)} must equal logits shape without the vocab dim "
            f"{tuple(logits.shape[:-1])}"
        )
    if logits.numel() == 0:
        return torch.zeros(index.shape, dtype=torch.float32, device=logits.device)
    return _SelectiveLogSoftmax.apply(logits, index, float(temperature), int(chunk_size))


def entropy_from_logits(
    logits: Tensor, *, temperature: float = 1.0, chunk_size: int = 1024
) -> Tensor:
    """Entropy in nats of ``softmax(logits / temperature)`` over the last dim.

    Chunked like `selective_log_softmax`; masked vocabulary entries (``-inf`` logits) contribute
    zero.

    Args:
        logits: ``[..., V]`` logits of any float dtype.
        temperature: sampling temperature (> 0).
        chunk_size: rows of the flattened leading dims processed at once.

    Returns:
        ``[...]`` float32 entropies, differentiable with respect to ``logits``.

    Raises:
        ValueError: on a non-float ``logits``, a temperature <= 0 or a chunk_size < 1.
    """
    _check(logits, temperature, chunk_size)
    if logits.numel() == 0:
        return torch.zeros(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    return _Entropy.apply(logits, float(temperature), int(chunk_size))
