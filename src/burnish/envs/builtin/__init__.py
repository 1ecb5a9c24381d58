"""The built-in environments (see each module for its prompt, answer format and reward)."""

from burnish.envs.builtin.arithmetic import ArithmeticEnv
from burnish.envs.builtin.calculator import CalculatorEnv, calculator, safe_eval
from burnish.envs.builtin.guess_number import GuessNumberEnv
from burnish.envs.builtin.keywords import KeywordsEnv
from burnish.envs.builtin.reverse import ReverseEnv

__all__ = [
    "ArithmeticEnv",
    "CalculatorEnv",
    "GuessNumberEnv",
    "KeywordsEnv",
    "ReverseEnv",
    "calculator",
    "safe_eval",
]
