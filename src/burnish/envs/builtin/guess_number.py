"""`guess-number`: a multi-turn guessing game.

The environment holds a secret integer in a range of `width` numbers (`Guess my number, 23-38.`).
Each assistant turn is one guess (strict format: the integer alone); the environment answers
`higher`, `lower`, or `correct` (which ends the game). A reply that is not an integer in the
range gets `say a number from 23 to 38` and still costs a turn.

Reward: 0 without a correct guess. A win within `optimal_turns` (the number of guesses the
midpoint binary search needs for this secret) earns 1; each extra turn costs 0.2, down to 0.2.
The gold player is that binary search, so it earns the maximum. Components: `won`, `turns`,
`optimal_turns`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from burnish.envs.base import MultiTurnEnv, assistant_texts, generate_tasks
from burnish.envs.builtin.arithmetic import parse_integer
from burnish.envs.tool_calls import COMPACT, ToolCallParser
from burnish.types import Message, Score, StepResult, Task, Trajectory


def binary_search_guesses(low: int, high: int, secret: int) -> list[int]:
    """The guesses of the midpoint binary search, the last one being `secret`."""
    guesses = []
    while True:
        guess = (low + high) // 2
        guesses.append(guess)
        if guess == secret:
            return guesses
        low, high = (guess + 1, high) if guess < secret else (low, guess - 1)


def remaining_range(task: Task, messages: Sequence[Message]) -> tuple[int, int]:
    """The secret's range that the higher/lower feedback so far leaves open."""
    low, high = task.info["low"], task.info["high"]
    turns = messages[len(task.prompt) :]
    for action, reply in zip(turns[::2], turns[1::2]):
        guess = parse_integer(action.content)
        if guess is None:
            continue
        if reply.content == "higher":
            low = max(low, guess + 1)
        elif reply.content == "lower":
            high = min(high, guess - 1)
    return low, high


def _range_of(key: str) -> str:
    return key.split(":")[0]


class GuessNumberEnv(MultiTurnEnv):
    """Guess a secret integer in [low, low + width − 1] with higher/lower feedback."""

    name = "guess-number"

    def __init__(self, width: int = 16, max_low: int = 90, max_turns: int = 6) -> None:
        if width < 2 or max_low < 0:
            raise ValueError(f"guess-number needs width >= 2, max_low >= 0; got {width}, {max_low}")
        self.width, self.max_low = width, max_low
        self.max_turns = max_turns

    def _draw(self, rng: random.Random) -> tuple[str, Task]:
        low = rng.randint(0, self.max_low)
        high = low + self.width - 1
        secret = rng.randint(low, high)
        key = f"{low}-{high}:{secret}"
        prompt = (Message("user", f"Guess my number, {low}-{high}."),)
        return key, Task(id=key, prompt=prompt, answer=secret, info={"low": low, "high": high})

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        # The secret is hidden, so the split is decided by the range alone: a test prompt never
        # appears in train. With few ranges the test share is larger than the default.
        stream = generate_tasks(
            self.name, split, seed, self._draw, split_key=_range_of, test_fraction=0.3
        )
        for t in stream:
            yield Task(f"{split}-{t.id}", t.prompt, t.answer, self.name, t.info)

    async def step(self, task: Task, state: Any, action: Message) -> StepResult:
        low, high = task.info["low"], task.info["high"]
        guess = parse_integer(action.content)
        if guess is None or not low <= guess <= high:
            reply = f"say a number from {low} to {high}"
        elif guess == task.answer:
            return StepResult(observation=(Message("user", "correct"),), done=True, reward=1.0)
        else:
            reply = "higher" if guess < task.answer else "lower"
        return StepResult(observation=(Message("user", reply),), reward=0.0)

    def score(self, task: Task, trajectory: Trajectory) -> Score:
        low, high = task.info["low"], task.info["high"]
        optimal = len(binary_search_guesses(low, high, task.answer))
        guesses = [parse_integer(t) for t in assistant_texts(task, trajectory)]
        turns = guesses.index(task.answer) + 1 if task.answer in guesses else 0
        value = 0.0 if not turns else max(0.2, 1.0 - 0.2 * max(0, turns - optimal))
        return Score(
            value, {"won": float(turns > 0), "turns": float(turns), "optimal_turns": float(optimal)}
        )

    def teacher(
        self, task: Task, messages: Sequence[Message], parser: ToolCallParser = COMPACT
    ) -> Message:
        """Midpoint binary search, narrowed by the feedback so far."""
        low, high = remaining_range(task, messages)
        return Message("assistant", str((low + high) // 2))
