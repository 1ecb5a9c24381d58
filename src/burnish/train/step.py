"""One optimizer phase on one rollout batch: micro-batches, gradient accumulation, inner epochs.

The loss is normalised over the whole optimizer step (every micro-batch passes the step's token
and sequence counts to `policy_loss`), so the gradient does not depend on the micro-batch size.

Forward passes are only made when needed:
- on-policy (one epoch, one minibatch) the old log-probs are the current ones, detached, so the
  ratio is exactly 1 and no separate old-logprob pass runs (docs/algorithms.md §13 item 3);
- off-policy (inner epochs or minibatches > 1) the old log-probs come from one no-grad pass
  before the first update, with the same model, kernels and precision as the training forward;
- reference log-probs (adapter disabled) only when `kl_coef > 0`;
- the high-entropy gate's threshold comes from the step's entropies (one no-grad pass, shared
  with the old-logprob pass when both are needed).
Micro-batches are built from rows sorted by length and trimmed to their longest row, so a
micro-batch carries little padding.

Data parallel (a `Shard`, `burnish.scale.trainer_ranks`): every rank holds the whole batch and
trains its rows `rows[rank::world]` of each minibatch with the minibatch's own normalisers. Its
forwards run through the shard's wrapper (DDP or FSDP2 around a `StepForward` of the policy),
which sums the gradients over the ranks in the backward of the step's last micro-batch (the
others run under `Shard.accumulate`), before the clip; the metrics' sums are all-reduced after
the last step. So N ranks take the step one process takes.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from burnish.algorithms import LossConfig, entropy_gate_threshold, policy_loss
from burnish.algorithms.mismatch import mismatch_sums
from burnish.models import reference_mode, sequence_logprobs
from burnish.models.shared_prefix import prompt_lengths, shared_prefix_logprobs
from burnish.types import TrainBatch


@dataclass(frozen=True)
class StepSettings:
    micro_batch_size: int = 64
    minibatches: int = 1
    inner_epochs: int = 1
    grad_clip: float | None = 1.0
    temperature: float = 1.0
    """Sampling temperature: log-probs and entropies use logits / temperature."""
    shared_prefix: bool = True
    """Run the prompt that a micro-batch's rows share once per group instead of once per row
    (`burnish.models.shared_prefix`); same log-probs and gradients up to float rounding."""


@dataclass(frozen=True)
class Shard:
    """This process's part of a data-parallel step (see the module docstring)."""

    rank: int
    world: int
    all_reduce: Callable[[torch.Tensor, str], None]
    """Reduces a tensor in place over the ranks (the metrics); the op is "sum" or "max"."""
    forward: torch.nn.Module
    """The data-parallel wrapper of `StepForward(policy)`: every forward of the step runs
    through it, and the backward of a forward outside `accumulate` sums the gradients."""
    accumulate: Callable[[], contextlib.AbstractContextManager]
    """A context whose backward passes only accumulate gradients (DDP's `no_sync`)."""


class StepForward(torch.nn.Module):
    """One micro-batch's log-probs (and entropies) as a module's `forward`, for DDP and FSDP2.

    Both arm their gradient reduction (FSDP2 also gathers the parameters) in the `forward` of
    the module they wrap, and burnish's log-prob code never calls the policy's `forward`: it
    runs the body and applies the LM head in chunks (`burnish.models.logprobs`). Wrapping this
    module instead puts the whole computation inside a wrapped `forward`.
    """

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, tokens_b_T, lengths_b, share_b, temperature: float, with_entropy: bool):
        return _logprobs(self.policy, tokens_b_T, lengths_b, share_b, temperature, with_entropy)


def _device(policy) -> torch.device:
    """Where the policy's weights are: the batch stays on the CPU, each micro-batch goes there."""
    return next(policy.parameters()).device


def _micro_batches(rows: torch.Tensor, lengths_B: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Split row indices into micro-batches of similar length (longest first)."""
    order = rows[torch.argsort(lengths_B[rows], descending=True, stable=True)]
    return [order[i : i + size] for i in range(0, len(order), size)]


def _logprobs(policy, tokens_b_T, lengths_b, share_b, temperature: float, with_entropy: bool):
    """Log-probs and entropies `[b, T]` of right-padded rows; `share_b` None: no shared prefix."""
    if share_b is not None:
        return shared_prefix_logprobs(
            policy,
            tokens_b_T,
            lengths_b,
            share_b,
            temperature=temperature,
            with_entropy=with_entropy,
        )
    T = tokens_b_T.shape[1]
    attn = (torch.arange(T, device=tokens_b_T.device)[None, :] < lengths_b[:, None]).long()
    return sequence_logprobs(
        policy,
        tokens_b_T,
        attention_mask_B_T=attn,
        temperature=temperature,
        with_entropy=with_entropy,
    )


def _forward(
    policy,
    batch: TrainBatch,
    idx: torch.Tensor,
    settings: StepSettings,
    with_entropy: bool,
    shard: Shard | None = None,
):
    """A micro-batch's log-probs and entropies `[b, T]` and T (through the shard's wrapper)."""
    T = int(batch.lengths_B[idx].max())
    dev = _device(policy)
    tokens, lengths = batch.tokens_B_T[idx, :T].to(dev), batch.lengths_B[idx].to(dev)
    share = None
    if settings.shared_prefix:
        share = prompt_lengths(batch.mask_B_T[idx, :T].to(dev), lengths)
    args = (tokens, lengths, share, settings.temperature, with_entropy)
    logp, ent = _logprobs(policy, *args) if shard is None else shard.forward(*args)
    return logp, ent, T


@torch.no_grad()
def _no_grad_pass(policy, batch, settings, shard, *, reference: bool, with_entropy: bool):
    """Log-probs (and entropies) of the whole batch without gradient, padded to [B, T]."""
    B, T = batch.tokens_B_T.shape
    logp_B_T = torch.zeros(B, T)
    ent_B_T = torch.zeros(B, T) if with_entropy else None
    ctx = reference_mode(policy) if reference else contextlib.nullcontext()
    with ctx:
        for idx in _micro_batches(torch.arange(B), batch.lengths_B, settings.micro_batch_size):
            logp, ent, t = _forward(policy, batch, idx, settings, with_entropy, shard)
            logp_B_T[idx, :t] = logp.float().cpu()
            if ent_B_T is not None:
                ent_B_T[idx, :t] = ent.float().cpu()
    return logp_B_T, ent_B_T


def _before_update(
    policy, batch: TrainBatch, loss_config: LossConfig, settings: StepSettings, shard: Shard | None
):
    """The no-grad passes the update needs, before any weight changes: old log-probs
    (off-policy, or for the entropy gate), reference log-probs (KL), and the gate's threshold.

    Returns `(old_logp_B_T | None, ref_logp_B_T | None, threshold | None)`.
    """
    off_policy = settings.inner_epochs > 1 or settings.minibatches > 1
    gate = loss_config.entropy_gate_quantile is not None
    old_logp_B_T = ent_B_T = ref_logp_B_T = threshold = None
    if off_policy or gate:
        old_logp_B_T, ent_B_T = _no_grad_pass(
            policy, batch, settings, shard, reference=False, with_entropy=gate
        )
    if loss_config.kl_coef > 0:
        ref_logp_B_T, _ = _no_grad_pass(
            policy, batch, settings, shard, reference=True, with_entropy=False
        )
    if gate:
        threshold = entropy_gate_threshold(
            ent_B_T, batch.mask_B_T, loss_config.entropy_gate_quantile
        )
    return old_logp_B_T, ref_logp_B_T, threshold


def train_on_batch(
    policy,
    batch: TrainBatch,
    loss_config: LossConfig,
    optimizer: torch.optim.Optimizer,
    settings: StepSettings,
    shard: Shard | None = None,
) -> dict[str, float]:
    """Run `inner_epochs` × `minibatches` optimizer steps on one rollout batch (this rank's
    rows of it with a `shard`).

    Returns the metrics averaged over micro-batches (weighted by their valid tokens), plus
    `loss/total`, `grad/norm`, `train/optimizer_steps` and the sampler/trainer mismatch
    (`mismatch/k3`, `mismatch/ratio_max`, measured before the first update).
    """
    before = _before_update(policy, batch, loss_config, settings, shard)
    acc = _Accumulators()
    if before[0] is not None:  # the no-grad pass ran before any update: measure on it
        _add_mismatch(acc.mismatch, before[0], batch.sampler_logp_B_T, batch.mask_B_T)

    params = [p for group in optimizer.param_groups for p in group["params"]]
    losses, norms = [], []
    for _ in range(settings.inner_epochs):
        for rows in torch.arange(batch.size).chunk(settings.minibatches):
            optimizer.zero_grad(set_to_none=True)
            losses.append(
                _minibatch_backward(policy, batch, rows, loss_config, settings, before, acc, shard)
            )
            if settings.grad_clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            else:
                norm = torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in params if p.grad is not None])
                )
            norms.append(float(norm))
            optimizer.step()
    if shard is not None:
        acc.weight = _reduce_metrics(
            shard,
            acc.sums,
            acc.maxes,
            losses,
            acc.mismatch if before[0] is None else None,
            acc.weight,
        )
    metrics = {k: v / max(acc.weight, 1e-12) for k, v in acc.sums.items()}
    metrics.update(acc.maxes)
    metrics["loss/total"] = sum(losses) / len(losses)
    metrics["grad/norm"] = sum(norms) / len(norms)
    metrics["train/optimizer_steps"] = float(len(losses))
    if acc.mismatch[1]:
        metrics["mismatch/k3"] = acc.mismatch[0] / acc.mismatch[1]
        metrics["mismatch/ratio_max"] = acc.mismatch[2]
    return metrics


@dataclass
class _Accumulators:
    """A step's metric sums (weighted by valid tokens), maxima and sampler/trainer mismatch."""

    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    maxes: dict[str, float] = field(default_factory=dict)
    weight: float = 0.0
    mismatch: list[float] = field(default_factory=lambda: [0.0, 0.0, float("-inf")])
    """k3 sum, tokens, max ratio: sampler vs trainer."""


def _minibatch_backward(
    policy, batch, rows, loss_config, settings, before, acc: _Accumulators, shard
) -> float:
    """Forward and backward of this rank's micro-batches of one minibatch; returns the loss.

    Gradients accumulate over the micro-batches; with a shard, the last backward sums them over
    the ranks. A rank left without rows (an uneven last minibatch) runs one row with a zero loss,
    so that it still takes part in that reduction.
    """
    old_logp_B_T, ref_logp_B_T, threshold = before
    n_tokens = float(batch.mask_B_T[rows].sum())
    own = rows if shard is None else rows[shard.rank :: shard.world]
    micro = _micro_batches(
        own if len(own) else rows[:1], batch.lengths_B, settings.micro_batch_size
    )
    step_loss = 0.0
    for i, idx in enumerate(micro):
        last = i == len(micro) - 1
        with contextlib.nullcontext() if shard is None or last else shard.accumulate():
            logp, ent, T = _forward(policy, batch, idx, settings, True, shard)
            dev = logp.device  # the batch stays on the CPU; each micro-batch goes to the policy
            mask = batch.mask_B_T[idx, :T].to(dev)
            sampler_logp = batch.sampler_logp_B_T[idx, :T].to(dev)
            if old_logp_B_T is None:  # on-policy: one pass, before the update
                old = logp.detach()
                if len(own):
                    _add_mismatch(acc.mismatch, old, sampler_logp, mask)
            else:
                old = old_logp_B_T[idx, :T].to(dev)
            loss, m = policy_loss(
                logp,
                old,
                _advantages(batch, idx, T).to(dev),
                mask,
                loss_config,
                ref_logp=None if ref_logp_B_T is None else ref_logp_B_T[idx, :T].to(dev),
                entropy=ent if loss_config.entropy_coef != 0.0 else ent.detach(),
                num_tokens=n_tokens,
                num_seqs=len(rows),
                entropy_threshold=threshold,
                sampler_logp=sampler_logp if loss_config.tis != "none" else None,
            )
            if not len(own):  # a stand-in row: reduce, but add nothing
                (loss * 0.0).backward()
                return 0.0
            loss.backward()
        step_loss += float(loss.detach())
        w = float(mask.sum())
        acc.weight += w
        for k, v in m.items():
            if k.endswith("max"):
                acc.maxes[k] = max(acc.maxes.get(k, float("-inf")), float(v))
            else:
                acc.sums[k] += w * float(v)
    return step_loss


class LocalTrainer:
    """Trains in this process (`train_on_batch`); `burnish.scale.trainer_ranks.TrainerRanks` is
    the same trainer over data-parallel ranks."""

    def start(self, policy, optimizer, scheduler) -> None:
        """Nothing to share: this process is the only rank."""

    def train(self, policy, batch, loss_config, optimizer, settings) -> dict[str, float]:
        return train_on_batch(policy, batch, loss_config, optimizer, settings)

    def close(self) -> None:
        pass


def _reduce_metrics(shard: Shard, sums, maxes, losses, mismatch, weight_total: float) -> float:
    """Sum (max) the metric accumulators over the ranks in place; returns the summed weight.

    `mismatch` is None when every rank measured it on the whole batch (nothing to add up).
    """
    keys, max_keys = sorted(sums), sorted(maxes)
    counts = torch.tensor([float(len(keys)), float(len(max_keys))], dtype=torch.float64)
    shard.all_reduce(counts, "sum")
    if counts.tolist() != [shard.world * len(keys), shard.world * len(max_keys)]:
        raise RuntimeError(
            f"rank {shard.rank} has metrics {keys + max_keys}, other ranks have others "
            f"(summed counts {counts.tolist()})"
        )
    extra = [0.0, 0.0] if mismatch is None else mismatch[:2]
    summed = torch.tensor(
        [*(sums[k] for k in keys), *losses, *extra, weight_total], dtype=torch.float64
    )
    shard.all_reduce(summed, "sum")
    top = torch.tensor(
        [*(maxes[k] for k in max_keys), float("-inf") if mismatch is None else mismatch[2]],
        dtype=torch.float64,
    )
    shard.all_reduce(top, "max")
    values = summed.tolist()
    for i, k in enumerate(keys):
        sums[k] = values[i]
    losses[:] = values[len(keys) : len(keys) + len(losses)]
    for i, k in enumerate(max_keys):
        maxes[k] = top[i].item()
    if mismatch is not None:
        mismatch[:] = [*values[-3:-1], top[-1].item()]
    return values[-1]


def _advantages(batch: TrainBatch, idx: torch.Tensor, T: int) -> torch.Tensor:
    """The micro-batch's advantages: per token `[b, T]` when the batch has them, else `[b]`."""
    if batch.advantages_B_T is not None:
        return batch.advantages_B_T[idx, :T]
    return batch.advantages_B[idx]


def _add_mismatch(acc: list[float], trainer_logp, sampler_logp, mask) -> None:
    """Accumulate `mismatch_sums` of one slice into `acc` = [k3 sum, tokens, max ratio]."""
    k3, n, ratio_max = mismatch_sums(trainer_logp, sampler_logp, mask)
    acc[0] += k3
    acc[1] += n
    if n:
        acc[2] = max(acc[2], ratio_max)
