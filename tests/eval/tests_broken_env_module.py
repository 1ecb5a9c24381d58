"""An environment whose scorer is wrong, importable by `module:attr` in CLI tests."""

from burnish.envs.builtin.arithmetic import ArithmeticEnv
from burnish.types import Score


class BrokenArithmetic(ArithmeticEnv):
    """Expects the answer plus one: no gold answer earns the maximum."""

    def score_answer(self, task, answer):
        return Score(float(answer.strip() == str(task.answer + 1)))
