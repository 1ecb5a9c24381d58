"""Evaluate a model (or an adapter) on an environment: pass@k, reward, turns, tokens.

"Pass" means an episode's programmatic score equals the environment's `max_reward` (1.0 for
every built-in): exact answers for `arithmetic` and `calculator`, the exact reversal for
`reverse`, a win within the binary-search number of turns for `guess-number`, all keywords for
`keywords`. Partial credit counts in `mean_reward`, never in pass@k.

Each of `n_tasks` tasks of the split (the first ones of the seeded stream) is played `samples`
times. pass@1 is the mean pass rate over all samples; pass@k (k = 1, 2, 4, ... up to `samples`,
and `samples` itself) is the unbiased estimator of Chen et al. averaged over tasks.

Episodes that end with an environment error and trajectories the scorer cannot score
(`Score.value is None`) are infrastructure failures: they are counted in `errors` and left out
of every mean (a task left with fewer than k valid samples is left out of pass@k).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from burnish.envs.registry import load_env
from burnish.eval.passk import pass_at_k
from burnish.rollout.base import Sampler, SamplingParams
from burnish.rollout.episode import DEFAULT_MAX_TOKENS, run_episodes
from burnish.types import StopReason, Trajectory


@dataclass(frozen=True)
class EvalResult:
    """What `evaluate` measured."""

    env: str
    split: str
    n_tasks: int
    samples: int
    pass_at: dict[int, float]
    """pass@k for k = 1, 2, 4, ... and `samples`."""
    mean_reward: float
    mean_turns: float
    mean_tokens: float
    """Sampled tokens per episode."""
    errors: int
    """Episodes left out: environment errors and unscorable trajectories."""
    stop_reasons: dict[str, int] = field(default_factory=dict)
    max_reward: float = 1.0
    components: dict[str, float] = field(default_factory=dict)
    """Mean of each score component over the scored episodes (e.g. won, used_tool, coverage)."""

    @property
    def pass_at_1(self) -> float:
        return self.pass_at[1]

    def to_dict(self) -> dict[str, Any]:
        """A flat dict with keys "pass@1", "pass@K", "mean_reward", ... (JSON-ready)."""
        out = {f"pass@{k}": v for k, v in sorted(self.pass_at.items())}
        rest = asdict(self)
        del rest["pass_at"]
        return {**out, **rest}


def _ks(samples: int) -> list[int]:
    return sorted({2**i for i in range(int(math.log2(samples)) + 1)} | {samples})


def summarize(env: Any, trajectories: Sequence[Trajectory], samples: int, split: str) -> EvalResult:
    """Score task-major trajectories (`samples` per task, in order) and aggregate them."""
    if samples < 1 or len(trajectories) % samples:
        raise ValueError(f"{len(trajectories)} trajectories do not split into groups of {samples}")
    max_reward = float(getattr(env, "max_reward", 1.0))
    rewards, turns, tokens, correct_P, valid_P = [], [], [], [], []
    stops: dict[str, int] = {}
    comps: dict[str, list[float]] = {}
    errors = 0
    for start in range(0, len(trajectories), samples):
        passed = valid = 0
        for traj in trajectories[start : start + samples]:
            stops[traj.stop_reason.value] = stops.get(traj.stop_reason.value, 0) + 1
            score = None if traj.stop_reason == StopReason.ERROR else env.score(traj.task, traj)
            value = None if score is None else score.value
            if value is None:
                errors += 1
                continue
            for k, v in score.components.items():
                comps.setdefault(k, []).append(float(v))
            valid += 1
            passed += abs(value - max_reward) <= 1e-9
            rewards.append(value)
            turns.append(traj.turns)
            tokens.append(traj.num_sampled)
        correct_P.append(passed)
        valid_P.append(valid)
    if not rewards:
        raise RuntimeError(
            f"every one of {len(trajectories)} episodes failed; first: {trajectories[0].error}"
        )
    pass_at = {}
    for k in _ks(samples):
        values = [pass_at_k(n, c, k) for n, c in zip(valid_P, correct_P, strict=True) if n >= k]
        pass_at[k] = sum(values) / len(values) if values else float("nan")
    pass_at[1] = sum(correct_P) / sum(valid_P)  # mean over all samples
    return EvalResult(
        env=getattr(env, "name", "?"),
        split=split,
        n_tasks=len(correct_P),
        samples=samples,
        pass_at=pass_at,
        mean_reward=sum(rewards) / len(rewards),
        mean_turns=sum(turns) / len(turns),
        mean_tokens=sum(tokens) / len(tokens),
        errors=errors,
        stop_reasons=stops,
        max_reward=max_reward,
        components={k: sum(v) / len(v) for k, v in comps.items()},
    )


async def evaluate_async(
    model: Any,
    tokenizer: Any,
    env: Any,
    *,
    samples: int = 8,
    n_tasks: int = 100,
    split: str = "test",
    adapter: str | None = None,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 64,
    max_turns: int | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    concurrency: int = 64,
    sampler: Sampler | None = None,
) -> EvalResult:
    """Play `samples` episodes on each of `n_tasks` tasks of `split` and aggregate them.

    Args:
        model: the model (ignored when `sampler` is given).
        tokenizer: its tokenizer (chat template, encoding).
        env: an environment or a registered environment name.
        adapter: adapter name passed to the sampler (None: the model as it is).
        seed: picks the tasks and seeds the sampler, so a run is repeatable.
        sampler: sample with this instead of a `LocalSampler` around `model`.
    """
    if samples < 1 or n_tasks < 1:
        raise ValueError(f"samples and n_tasks must be >= 1, got {samples} and {n_tasks}")
    env = load_env(env) if isinstance(env, str) else env
    tasks = list(islice(env.tasks(split, seed), n_tasks))
    if not tasks:
        raise ValueError(f"environment {env.name!r} has no {split!r} tasks")
    if sampler is None:
        from burnish.rollout.local import LocalSampler

        sampler = LocalSampler(model, tokenizer, seed=seed)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature)
    repeated = [t for t in tasks for _ in range(samples)]
    trajectories = await run_episodes(
        env,
        repeated,
        sampler,
        tokenizer,
        params,
        concurrency=concurrency,
        max_turns=max_turns,
        max_tokens=max_tokens,
        adapter=adapter,
    )
    return summarize(env, trajectories, samples, split)


def evaluate(model: Any, tokenizer: Any, env: Any, **kwargs: Any) -> EvalResult:
    """`evaluate_async` for synchronous callers (runs its own event loop; takes the same
    arguments)."""
    return asyncio.run(evaluate_async(model, tokenizer, env, **kwargs))


def format_table(result: EvalResult) -> str:
    """A small plain-text table of an evaluation."""
    rows = [("env", result.env), ("split", result.split), ("tasks", str(result.n_tasks))]
    rows += [(f"pass@{k}", f"{v:.3f}") for k, v in sorted(result.pass_at.items())]
    rows += [
        ("mean reward", f"{result.mean_reward:.3f}"),
        ("mean turns", f"{result.mean_turns:.2f}"),
        ("mean tokens", f"{result.mean_tokens:.1f}"),
        ("errors", str(result.errors)),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def evaluate_model(
    model_name: str,
    env_name: str,
    *,
    adapter_dir: str | None = None,
    threads: int | None = None,
    **kwargs: Any,
) -> EvalResult:
    """Load a model (and optionally a saved adapter) by name and evaluate it (`burnish eval`)."""
    from burnish.models.load import load_model
    from burnish.models.lora import load_adapter
    from burnish.models.threads import set_threads

    set_threads(threads)
    model, tokenizer = load_model(model_name)
    if adapter_dir is not None:
        model = load_adapter(model, adapter_dir)  # active on the base model
    return evaluate(model, tokenizer, load_env(env_name), **kwargs)


def evaluate_served(
    base_url: str,
    served_model: str,
    env_name: str,
    *,
    tokenizer_from: str | None = None,
    adapter: str | None = None,
    api_key_env: str | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> EvalResult:
    """Evaluate a model served behind an OpenAI-compatible API (`burnish eval --base-url`).

    Prompts are rendered and tokenized here with the tokenizer of ``tokenizer_from`` (default
    ``served_model``, a hub id or path as vLLM names its model) and sent as token ids, so the
    episode is the one a local evaluation plays; ``adapter`` names a served LoRA adapter.
    """
    from burnish.models.load import load_tokenizer
    from burnish.rollout.openai_sampler import OpenAISampler

    tokenizer = load_tokenizer(tokenizer_from or served_model)
    sampler = OpenAISampler(base_url, served_model, api_key_env, seed=seed)

    async def run() -> EvalResult:
        try:
            return await evaluate_async(
                None, tokenizer, load_env(env_name), sampler=sampler, adapter=adapter,
                seed=seed, **kwargs,
            )  # fmt: skip
        finally:
            await sampler.aclose()

    return asyncio.run(run())
