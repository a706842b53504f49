"""The calculator tool: integer arithmetic read with :mod:`ast`, never ``eval``.

Registered as ``calculator`` in :data:`r1rl.envs.base.TOOLS`. The arithmetic task's tool traces
call it with the prompt's expression (``(4821+9124)*7``); its docstring is the schema the chat
template shows the model. A bad expression raises :class:`ValueError`, which the tool runner turns
into an ``error: ...`` message the model reads.

>>> calculator("(4821+9124)*7"), calculator("-12-4821"), calculator("7/2"), calculator("7/2*2")
('97615', '-4833', '3.5', '7')
>>> calculator("2**10")
Traceback (most recent call last):
...
ValueError: unsupported in an integer expression: '2 ** 10'
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from r1rl.envs.base import TOOLS

MAX_CHARS = 500  # the expressions it is for are a few dozen characters; a longer one is a mistake
_BINARY: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: dict[type[ast.unaryop], Callable[[Fraction], Fraction]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


@TOOLS.register("calculator")
def calculator(expression: str) -> str:
    """Evaluate integer arithmetic.

    Args:
        expression: e.g. "(4821+9124)*7": integers, + - * / // %, parentheses, unary minus.

    Returns:
        The value, e.g. "97615"; an uneven division gives a decimal such as "3.5".
    """
    if len(expression) > MAX_CHARS:
        raise ValueError(f"expression is {len(expression)} characters long; at most {MAX_CHARS}")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None
    value = _value(tree.body)
    return str(value.numerator) if value.denominator == 1 else repr(float(value))


def _value(node: ast.expr) -> Fraction:
    """The exact value of one node: a rational, so ``7/2*2`` is 7 and not 7.0."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if right == 0 and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            raise ValueError("division by zero")
        return _BINARY[type(node.op)](left, right)
    raise ValueError(f"unsupported in an integer expression: {ast.unparse(node)[:40]!r}")


def calculator_trace(expression: str, answer: int) -> list[dict[str, Any]]:
    """A completion that asks the calculator: the call, the tool's result, then ``<answer>n</answer>``."""
    call = {"type": "function", "function": {"name": "calculator", "arguments": {"expression": expression}}}
    return [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "calculator", "content": str(answer), "status": "ok"},
        {"role": "assistant", "content": f"<answer>{answer}</answer>"},
    ]
