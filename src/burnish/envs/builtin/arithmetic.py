"""`arithmetic`: integer addition and subtraction of two 2-digit numbers.

Prompt: one user message such as `47+38=`. Answer format (strict): the assistant message is the
integer result and nothing else, optionally surrounded by whitespace (`85`, `-12`); a leading
`+`, spaces inside the number or any other text scores 0. Reward 1 for the right integer, else 0.
Components: `correct` (1/0) and `format` (1 when the reply is a well-formed integer).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

from burnish.envs.base import SingleTurnEnv, generate_tasks
from burnish.types import Message, Score, Task

_INTEGER = re.compile(r"^-?\d+$")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b}


def parse_integer(text: str) -> int | None:
    """The integer a reply states under the strict format, or None."""
    text = text.strip()
    return int(text) if _INTEGER.match(text) else None


class ArithmeticEnv(SingleTurnEnv):
    """Two-operand integer + and − with operands in [low, high]."""

    name = "arithmetic"

    def __init__(self, low: int = 10, high: int = 99) -> None:
        super().__init__()
        if not 0 <= low <= high:
            raise ValueError(f"arithmetic needs 0 <= low <= high, got low={low}, high={high}")
        self.low, self.high = low, high

    def _draw(self, rng: random.Random) -> tuple[str, Task]:
        a, b = rng.randint(self.low, self.high), rng.randint(self.low, self.high)
        op = rng.choice(list(_OPS))
        key = f"{a}{op}{b}"
        return key, Task(id=key, prompt=(Message("user", f"{key}="),), answer=_OPS[op](a, b))

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        for t in generate_tasks(self.name, split, seed, self._draw):
            yield Task(id=f"{split}-{t.id}", prompt=t.prompt, answer=t.answer, env=self.name)

    def score_answer(self, task: Task, answer: str) -> Score:
        value = parse_integer(answer)
        correct = float(value is not None and value == task.answer)
        return Score(correct, {"correct": correct, "format": float(value is not None)})

    def gold_answer(self, task: Task) -> str:
        return str(task.answer)
