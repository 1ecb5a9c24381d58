"""`reverse`: reverse a short lowercase string.

Prompt: `reverse: abcde`. The reply (whitespace stripped) is compared with the reversed string;
reward = 1 − Levenshtein(reply, gold) / max(len(reply), len(gold)), so partial answers earn
partial credit and only the exact reversal earns 1. Components: `exact` (1/0), `similarity`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator

from burnish.envs.base import SingleTurnEnv, generate_tasks
from burnish.types import Message, Score, Task


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def similarity(a: str, b: str) -> float:
    """1 − normalised edit distance, in [0, 1]; two empty strings are identical."""
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1.0 - edit_distance(a, b) / longest


class ReverseEnv(SingleTurnEnv):
    """Reverse strings of `min_len`..`max_len` letters from `alphabet`."""

    name = "reverse"

    def __init__(
        self, min_len: int = 3, max_len: int = 8, alphabet: str = string.ascii_lowercase
    ) -> None:
        super().__init__()
        if not 1 <= min_len <= max_len or not alphabet:
            raise ValueError(
                f"reverse needs 1 <= min_len <= max_len and a non-empty alphabet, got "
                f"min_len={min_len}, max_len={max_len}, alphabet={alphabet!r}"
            )
        self.min_len, self.max_len, self.alphabet = min_len, max_len, alphabet

    def _draw(self, rng: random.Random) -> tuple[str, Task]:
        n = rng.randint(self.min_len, self.max_len)
        word = "".join(rng.choice(self.alphabet) for _ in range(n))
        return word, Task(id=word, prompt=(Message("user", f"reverse: {word}"),), answer=word[::-1])

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        for t in generate_tasks(self.name, split, seed, self._draw):
            yield Task(id=f"{split}-{t.id}", prompt=t.prompt, answer=t.answer, env=self.name)

    def score_answer(self, task: Task, answer: str) -> Score:
        sim = similarity(answer.strip(), task.answer)
        return Score(sim, {"exact": float(answer.strip() == task.answer), "similarity": sim})

    def gold_answer(self, task: Task) -> str:
        return task.answer
