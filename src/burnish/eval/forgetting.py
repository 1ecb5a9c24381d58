"""Forgetting: how far a trained policy has moved from its base, measured where it was trained.

RL's Razor (Shenfeld, Pari and Agrawal, arXiv 2509.04259) finds that forgetting of other skills
is predicted by the KL between the fine-tuned policy π_θ and the base π_0 *on the new task's
prompts*. `kl_to_base` measures it in both directions at every eval point of a run:

- forward ``KL(π_0 ‖ π_θ)``: sequences sampled from the base policy (the paper's measure);
- reverse ``KL(π_θ ‖ π_0)``: sequences sampled from the trained policy.

Each is a Monte-Carlo estimate over sampled sequences (one per test prompt): per sequence, the
exact per-token KL over the vocabulary (`burnish.algorithms.kl.kl_from_logits`) summed over the
sampled positions, then the mean over sequences (nats per sequence). Taking the next-token
expectation exactly leaves only the prefixes sampled, so the estimate is unbiased for the
sequence-level KL, never negative, and has lower variance than the sampled-token log-ratio.
Environment and prompt tokens are conditioned on, never counted.

The base is the same model with its LoRA adapter switched off (`reference_mode`), or with full
fine-tuning a frozen copy of the base weights taken before the first update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import torch

from burnish.algorithms.kl import kl_from_logits
from burnish.models import reference_mode
from burnish.models.logprobs import body_and_head, position_ids_from_mask
from burnish.rollout.base import SamplingParams
from burnish.rollout.episode import run_episodes
from burnish.rollout.local import LocalSampler
from burnish.types import Trajectory

__all__ = ["kl_to_base", "sequence_kl"]


@contextlib.contextmanager
def _model(policy: Any, base: Any | None, which: str) -> Iterator[Any]:
    """The module to run as `which` ("policy" or "base"), in eval mode, state restored after."""
    model = policy if which == "policy" or base is None else base
    was_training = model.training
    model.eval()
    try:
        if which == "base" and base is None:
            with reference_mode(policy):
                yield policy
        else:
            yield model
    finally:
        model.train(was_training)


def _pad(trajs: Sequence[Trajectory]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens, attention and loss masks `[B, T]` of trajectories, right-padded."""
    B, T = len(trajs), max(len(t.tokens) for t in trajs)
    tokens = torch.zeros(B, T, dtype=torch.long)
    attn = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i, t in enumerate(trajs):
        n = len(t.tokens)
        tokens[i, :n] = torch.tensor(t.tokens)
        attn[i, :n] = 1
        mask[i, :n] = torch.tensor(t.mask, dtype=torch.bool)
    return tokens, attn, mask


def _logits_at(model: Any, tokens, attn, pos_B_T: torch.Tensor) -> torch.Tensor:
    """`[N, V]` logits of the positions that predict the sampled tokens (`pos_B_T` marks the
    sampled token at t; the hidden state at t − 1 predicts it)."""
    body, head = body_and_head(model)
    hidden = body(
        input_ids=tokens,
        attention_mask=attn,
        position_ids=position_ids_from_mask(attn),
        use_cache=False,
    ).last_hidden_state
    return head(hidden[:, :-1][pos_B_T[:, 1:]])


@torch.no_grad()
def sequence_kl(
    policy: Any,
    base: Any | None,
    trajs: Sequence[Trajectory],
    direction: str,
    *,
    temperature: float = 1.0,
    micro_batch: int = 16,
) -> list[float]:
    """Per trajectory, ``Σ_t KL(p(·|prefix_t) ‖ q(·|prefix_t))`` over its sampled tokens (nats).

    ``direction = "reverse"``: p = policy, q = base; ``"forward"``: p = base, q = policy. `base`
    is a frozen base model, or None for `policy` with its adapter switched off. Each
    micro-batch runs under one policy, then the other (LoRA's base is the same module).
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction must be 'forward' or 'reverse'; got {direction!r}")
    p_which, q_which = ("policy", "base") if direction == "reverse" else ("base", "policy")
    out: list[float] = []
    device = next(policy.parameters()).device  # the base model sits beside the policy
    for start in range(0, len(trajs), micro_batch):
        rows = trajs[start : start + micro_batch]
        tokens, attn, mask = (x.to(device) for x in _pad(rows))
        with _model(policy, base, p_which) as m:
            logits_p_N_V = _logits_at(m, tokens, attn, mask)
        with _model(policy, base, q_which) as m:
            logits_q_N_V = _logits_at(m, tokens, attn, mask)
        kl_N = kl_from_logits(logits_p_N_V, logits_q_N_V, temperature)
        sel_B_T = mask[:, 1:]
        row_N = torch.arange(len(rows), device=device)[:, None].expand_as(sel_B_T)[sel_B_T]
        out += torch.zeros(len(rows), device=device).index_add_(0, row_N, kl_N.float()).tolist()
    return out


async def _samples(model: Any, tokenizer: Any, envs, tasks, params, adapter, budget):
    sampler = LocalSampler(model, tokenizer, seed=params.seed)
    try:
        return await run_episodes(
            envs, tasks, sampler, tokenizer, params, adapter=adapter, **budget
        )
    finally:
        sampler.close()


async def kl_to_base(
    policy: Any,
    tokenizer: Any,
    envs: Sequence[Any],
    *,
    base: Any | None = None,
    n_tasks: int = 32,
    seed: int = 0,
    temperature: float = 1.0,
    max_new_tokens: int = 32,
    budget: dict[str, int] | None = None,
) -> dict[str, float]:
    """``{"forward": KL(π_0‖π_θ), "reverse": KL(π_θ‖π_0), "sequences": n}`` on test prompts.

    `n_tasks` test tasks of each environment in `envs`, one sequence from each policy per task,
    sampled with `seed` at `temperature` (0 is taken as 1: a KL needs the distributions). `base`
    is a frozen copy of the base model; None means `policy`'s adapter switched off. The global
    torch RNG is left as it was, so measuring never changes a run's training.
    """
    temperature = temperature or 1.0
    pairs = [(env, t) for env in envs for t in islice(env.tasks("test", seed), n_tasks)]
    env_of, tasks = [e for e, _ in pairs], [t for _, t in pairs]
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    budget = budget or {}
    with torch.random.fork_rng():
        from_policy = await _samples(policy, tokenizer, env_of, tasks, params, None, budget)
        base_model, adapter = (policy, "base") if base is None else (base, None)
        from_base = await _samples(base_model, tokenizer, env_of, tasks, params, adapter, budget)
    out = {}
    for direction, trajs in (("forward", from_base), ("reverse", from_policy)):
        kls = sequence_kl(policy, base, trajs, direction, temperature=temperature)
        out[direction] = sum(kls) / max(len(kls), 1)
    out["sequences"] = float(len(tasks))
    return out
