"""The environment contract and the helpers most environments are built from.

An environment owns tasks, the rules of the conversation and the reward; the framework owns the
episode loop (rendering, sampling, tool-call parsing, token segments: `burnish.rollout.episode`).

- `Environment` is the protocol (docs/environments.md). Anything with these members works.
- `BaseEnv` adds the shared machinery: `gold_messages` (replays the environment's deterministic
  `teacher` through `reset`/`step`) and `validate` (the gold transcript must earn `max_reward`).
- `SingleTurnEnv`: one prompt, one answer, a score function of the answer text.
- `MultiTurnEnv`: the subclass writes `step` (and keeps its own state in `StepResult.state`).
- `EnvMix`: a weighted mixture of environments; tasks are drawn by weight, deterministically
  from the seed, and `reset`/`step`/`score` are routed by `Task.env`.

Observations returned together with `done=True` are kept in the conversation (for scorers and
logs) but never tokenized: nothing is sampled after them.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from burnish.envs.tool_calls import COMPACT, ToolCallParser
from burnish.seeds import seeded_rng
from burnish.types import Message, Score, StepResult, StopReason, Task, Trajectory

SPLITS = ("train", "test")


class EnvValidationError(AssertionError):
    """The gold answer of a task does not earn the environment's maximum reward."""


@runtime_checkable
class Environment(Protocol):
    """What the episode runner, the trainer and evaluation need from an environment."""

    name: str

    def tasks(self, split: str, seed: int) -> Iterator[Task]: ...

    async def reset(self, task: Task) -> list[Message]: ...

    async def step(self, task: Task, state: Any, action: Message) -> StepResult: ...

    def score(self, task: Task, trajectory: Trajectory) -> Score: ...

    def validate(self, task: Task) -> None: ...


def checked_score(result: Any, env: Any, method: str) -> Score:
    """`result` if it is a `Score`; otherwise a TypeError naming the environment, the method
    and what it must return (a bare float is the usual slip)."""
    if isinstance(result, Score):
        return result
    name = getattr(env, "name", None) or type(env).__name__
    hint = (
        f"; wrap the number: return Score({result!r}) or Score(value, {{'correct': value}})"
        if isinstance(result, (int, float)) and not isinstance(result, bool)
        else ""
    )
    raise TypeError(
        f"environment {name!r}: {method} returned {type(result).__name__} {result!r:.80}, but it "
        f"must return a burnish.types.Score (Score(value, components); Score(None) for "
        f"unscorable){hint}"
    )


def split_of(key: str, test_fraction: float = 0.1) -> str:
    """The split a generated problem belongs to, from a stable hash of its key.

    Splits are disjoint by construction: a problem is in exactly one split whatever the seed.
    """
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
    return "test" if bucket < test_fraction else "train"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")


def generate_tasks(
    env_name: str,
    split: str,
    seed: int,
    draw: Callable[[random.Random], tuple[str, Task]],
    *,
    split_key: Callable[[str], str] = lambda key: key,
    test_fraction: float = 0.1,
    max_misses: int = 10_000,
) -> Iterator[Task]:
    """Distinct tasks of one split, drawn at random from a seeded generator.

    Args:
        env_name: environment name, mixed into the seed so environments do not share streams.
        split: "train" or "test"; a drawn problem is kept only when `split_of(key)` matches.
        seed: the stream's seed; the same seed gives the same tasks in the same order.
        draw: returns `(key, task)` for one random problem; `key` identifies the problem.
        split_key: the part of the key that decides the split (by default all of it). Problems
            that look the same to the model (same prompt) must share a split key.
        test_fraction: the share of problems that belong to the test split.
        max_misses: stop once this many draws in a row gave nothing new (space exhausted).
    """
    check_split(split)
    rng = seeded_rng(env_name, split, seed)
    seen: set[str] = set()
    misses = 0
    while misses < max_misses:
        key, task = draw(rng)
        if key in seen or split_of(f"{env_name}/{split_key(key)}", test_fraction) != split:
            misses += 1
            continue
        misses = 0
        seen.add(key)
        yield task


def assistant_texts(task: Task, trajectory: Trajectory) -> list[str]:
    """The assistant messages of an episode, after the task prompt."""
    return [m.content for m in trajectory.messages[len(task.prompt) :] if m.role == "assistant"]


class BaseEnv:
    """Shared machinery: gold transcripts and validation.

    Subclasses implement `tasks`, `step`, `score` and `teacher`.
    """

    name: str = ""
    max_reward: float = 1.0
    """The reward of a perfect episode; `validate` and pass@k compare against it."""
    max_turns: int = 1
    """The episode's turn limit unless the caller sets a smaller one."""
    tool_schemas: tuple[dict[str, Any], ...] = ()
    """JSON schemas of the environment's tools (empty: the framework parses no tool calls)."""

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        raise NotImplementedError

    async def reset(self, task: Task) -> list[Message]:
        return list(task.prompt)

    async def step(self, task: Task, state: Any, action: Message) -> StepResult:
        raise NotImplementedError

    def score(self, task: Task, trajectory: Trajectory) -> Score:
        raise NotImplementedError

    def teacher(
        self, task: Task, messages: Sequence[Message], parser: ToolCallParser = COMPACT
    ) -> Message:
        """The gold next assistant message given the conversation so far (deterministic)."""
        raise NotImplementedError

    def gold_messages(self, task: Task, parser: ToolCallParser = COMPACT) -> list[Message]:
        """The messages after the prompt that solve `task`: teacher turns and observations.

        Tool calls are written in `parser`'s syntax (the compact syntax of the burnish character
        tokenizer by default), so the transcript can be used as pretraining text.
        """
        return self._replay(task, parser)[0][len(task.prompt) :]

    def _replay(self, task: Task, parser: ToolCallParser) -> tuple[list[Message], bool]:
        """The gold transcript and whether it finished. Synchronous: called from synchronous
        code (validation, pretraining data), never from inside a run's event loop."""
        return asyncio.run(self.gold_transcript(task, parser))

    async def gold_transcript(
        self, task: Task, parser: ToolCallParser = COMPACT
    ) -> tuple[list[Message], bool]:
        """The whole gold conversation of `task` (prompt included) and whether it finished."""
        messages = list(await self.reset(task))
        state: Any = None
        for _ in range(self.max_turns):
            action = self.teacher(task, messages, parser)
            result = await self.step(task, state, action)
            messages += [action, *result.observation]
            state = result.state
            if result.done:
                return messages, True
        return messages, False

    def validate(self, task: Task) -> None:
        """Raise `EnvValidationError` unless the gold transcript earns `max_reward`."""
        messages, done = self._replay(task, COMPACT)
        if not done:
            raise EnvValidationError(
                f"{self.name} task {task.id!r}: the gold transcript did not finish within "
                f"{self.max_turns} turns"
            )
        turns = sum(m.role == "assistant" for m in messages[len(task.prompt) :])
        trajectory = Trajectory(
            task=task,
            segments=(),
            messages=tuple(messages),
            stop_reason=StopReason.DONE,
            turns=turns,
        )
        score = self.score(task, trajectory)
        if score.value is None or abs(score.value - self.max_reward) > 1e-9:
            raise EnvValidationError(
                f"{self.name} task {task.id!r}: gold answer scored {score.value} "
                f"(components {dict(score.components)}), expected the maximum {self.max_reward}"
            )


class SingleTurnEnv(BaseEnv):
    """One prompt, one answer, a score function of the answer text.

    Subclass and implement `tasks`, `score_answer` and `gold_answer`, or pass them as functions.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        tasks: Callable[[str, int], Iterable[Task]] | None = None,
        score_answer: Callable[[Task, str], Score] | None = None,
        gold_answer: Callable[[Task], str] | None = None,
        max_reward: float = 1.0,
    ) -> None:
        if name is not None:
            self.name = name
        self.max_reward = max_reward
        self._tasks_fn = tasks
        self._score_fn = score_answer
        self._gold_fn = gold_answer

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        if self._tasks_fn is None:
            raise NotImplementedError(f"{type(self).__name__} defines no tasks")
        check_split(split)
        return iter(self._tasks_fn(split, seed))

    def score_answer(self, task: Task, answer: str) -> Score:
        if self._score_fn is None:
            raise NotImplementedError(f"{type(self).__name__} defines no score_answer")
        return self._score_fn(task, answer)

    def gold_answer(self, task: Task) -> str:
        if self._gold_fn is None:
            raise NotImplementedError(f"{type(self).__name__} defines no gold_answer")
        return self._gold_fn(task)

    async def step(self, task: Task, state: Any, action: Message) -> StepResult:
        return StepResult(done=True)

    def score(self, task: Task, trajectory: Trajectory) -> Score:
        answers = assistant_texts(task, trajectory)
        result = self.score_answer(task, answers[0] if answers else "")
        return checked_score(result, self, "score_answer")

    def teacher(
        self, task: Task, messages: Sequence[Message], parser: ToolCallParser = COMPACT
    ) -> Message:
        return Message("assistant", self.gold_answer(task))


class MultiTurnEnv(BaseEnv):
    """A conversation of several turns; the subclass writes `step`, `score` and `teacher`.

    `step` receives the state it returned last time (None on the first turn) and returns the
    next observation, whether the episode is over, and the new state.
    """

    max_turns = 8


class EnvMix(BaseEnv):
    """A weighted mixture of environments.

    `tasks(split, seed)` draws the environment of each task by weight from a generator seeded by
    `seed` (the same seed gives the same sequence) and takes that environment's next task; the
    task's `env` field names its environment, and `reset`, `step`, `score` and `validate` are
    routed by it. The stream ends when any environment runs out of tasks.
    """

    def __init__(self, envs: Mapping[str, Any] | Sequence[Any], weights: Sequence[float] = ()):
        items = list(envs.items()) if isinstance(envs, Mapping) else [(e.name, e) for e in envs]
        if not items:
            raise ValueError("EnvMix needs at least one environment")
        self.envs: dict[str, Any] = dict(items)
        if len(self.envs) != len(items):
            raise ValueError(f"EnvMix environment names repeat: {[n for n, _ in items]}")
        weights = list(weights) or [1.0] * len(items)
        if len(weights) != len(items) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"EnvMix weights must be {len(items)} non-negative numbers with a positive sum, "
                f"got {weights}"
            )
        total = sum(weights)
        self.weights = {n: w / total for (n, _), w in zip(items, weights, strict=True)}
        self.name = "mix(" + ",".join(self.envs) + ")"
        self.max_turns = max(getattr(e, "max_turns", 1) for e in self.envs.values())

    def env_of(self, task: Task) -> Any:
        if task.env not in self.envs:
            raise KeyError(
                f"task {task.id!r} names environment {task.env!r}, not in {list(self.envs)}"
            )
        return self.envs[task.env]

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        check_split(split)
        rng = seeded_rng("mix", split, seed)
        streams = {n: iter(e.tasks(split, seed)) for n, e in self.envs.items()}
        names, weights = list(self.weights), list(self.weights.values())
        while True:
            name = rng.choices(names, weights)[0]
            task = next(streams[name], None)
            if task is None:
                return
            yield task if task.env == name else _with_env(task, name)

    async def reset(self, task: Task) -> list[Message]:
        return await self.env_of(task).reset(task)

    async def step(self, task: Task, state: Any, action: Message) -> StepResult:
        return await self.env_of(task).step(task, state, action)

    def score(self, task: Task, trajectory: Trajectory) -> Score:
        return self.env_of(task).score(task, trajectory)

    def validate(self, task: Task) -> None:
        self.env_of(task).validate(task)


def _with_env(task: Task, name: str) -> Task:
    return Task(id=task.id, prompt=task.prompt, answer=task.answer, env=name, info=task.info)
