"""`calculator`: tool use. The model computes `a*b+c` with a calculator tool, then answers.

Prompt: `37*48+125=?`. The environment offers one tool, `calculator(expression: str)`, a safe
arithmetic evaluator (numbers, + − * / // % ** and parentheses, parsed with `ast`; nothing is
`eval`-ed). Literals and every intermediate result are limited to |x| <= 1e15, and exponents
to 64; anything past that, a division by zero or an overflow is a `ToolError` that the model
reads as the tool's answer. The gold transcript calls the tool once with the whole expression
and then answers with the integer alone. Reward 1 when the final answer (the last assistant message without a
tool call, strict integer format) equals the result, else 0; tool use does not change the
reward, it is reported: components `correct`, `used_tool`, `tool_calls`.
"""

from __future__ import annotations

import ast
import operator
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from burnish.envs.base import generate_tasks
from burnish.envs.builtin.arithmetic import parse_integer
from burnish.envs.tool_calls import COMPACT, ToolCallParser
from burnish.envs.tools import ToolEnv, ToolError
from burnish.types import Message, Score, Task, ToolCall, Trajectory

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_ABS = 10**15
MAX_EXPONENT = 64


_LIMIT = f"at most {MAX_ABS:.0e} in absolute value"


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if not abs(node.value) <= MAX_ABS:  # also refuses inf and nan
            raise ToolError(f"number {node.value:.6g} is too large ({_LIMIT})")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError as e:
            raise ToolError("division by zero") from e
        except ArithmeticError as e:  # OverflowError: a float result past the float range
            raise ToolError(f"result out of range ({_LIMIT})") from e
        if isinstance(value, complex) or not abs(value) <= MAX_ABS:
            raise ToolError(f"result out of range ({_LIMIT})")
        return value
    raise ToolError(f"unsupported expression element: {type(node).__name__}")


def safe_eval(expression: str) -> int | float:
    """Evaluate an arithmetic expression without `eval`.

    Raises:
        ToolError: not an arithmetic expression, or out of range.
    """
    if len(expression) > 200:
        raise ToolError("expression too long (at most 200 characters)")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as e:  # ValueError: a NUL byte
        raise ToolError(f"cannot parse {expression!r}") from e
    return _eval(tree)


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression.

    Args:
        expression: numbers with + - * / // % ** and parentheses, e.g. 12*7+5.
    """
    value = safe_eval(expression)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


class CalculatorEnv(ToolEnv):
    """`a*b+c` with 2-digit a, b, c: the product is meant to be computed with the tool."""

    name = "calculator"

    def __init__(self, low: int = 10, high: int = 99, max_turns: int = 4) -> None:
        super().__init__([calculator], max_turns=max_turns)
        self.low, self.high = low, high

    def _draw(self, rng: random.Random) -> tuple[str, Task]:
        a, b, c = (rng.randint(self.low, self.high) for _ in range(3))
        key = f"{a}*{b}+{c}"
        return key, Task(
            id=key, prompt=(Message("user", f"{key}=?"),), answer=a * b + c, info={"expr": key}
        )

    def tasks(self, split: str, seed: int) -> Iterator[Task]:
        for t in generate_tasks(self.name, split, seed, self._draw):
            yield Task(f"{split}-{t.id}", t.prompt, t.answer, self.name, t.info)

    def score_answer(self, task: Task, answer: str, trajectory: Trajectory) -> Score:
        calls = sum(len(m.tool_calls) for m in trajectory.messages if m.role == "assistant")
        correct = float(parse_integer(answer) == task.answer)
        return Score(
            correct, {"correct": correct, "used_tool": float(calls > 0), "tool_calls": float(calls)}
        )

    def teacher(
        self, task: Task, messages: Sequence[Message], parser: ToolCallParser = COMPACT
    ) -> Message:
        """Call the calculator on the whole expression, then copy its result."""
        tool_results = [m.content for m in messages[len(task.prompt) :] if m.role == "tool"]
        if tool_results:
            return Message("assistant", tool_results[-1])
        call = ToolCall("calculator", {"expression": task.info["expr"]}, id="call_0")
        return Message("assistant", parser.format((call,)), tool_calls=(call,))
