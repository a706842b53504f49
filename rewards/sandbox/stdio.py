"""Judging stdin/stdout programs (APPS, CodeContests): compare each case's output in the parent.

The program runs once per case with the case's input on stdin (:func:`r1rl.rewards.sandbox.
run_io_tests`); the expected outputs never enter the sandbox, and the comparison happens here.
Three ways to compare, after the checkers competitive judges use (testlib's ``wcmp`` and
``rcmp6``; online-judge-tools' ``SplitComparator`` and ``FloatingPointNumberComparator``):

- ``exact``: the output equals the expected text, byte for byte;
- ``whitespace``: the same sequence of whitespace-separated tokens (line breaks, runs of spaces
  and trailing newlines do not matter);
- ``float``: the same tokens, except that two tokens that are both decimal numbers compare as
  numbers: exactly when the expected one is written as an integer (``7``, ``+7``), else within
  ``tol``, absolute or relative (as ``math.isclose``), and never when they differ by 1 or more.

A number is a token of :data:`DECIMAL`'s grammar, ASCII digits with an optional sign, point and
exponent, read exactly (``decimal``), never by Python's ``float()``, which would also take
``nan``, ``inf``, ``1_000`` and non-ASCII digits, and would round ``1000000007`` and a 400-digit
answer (to ``inf``) into agreement with a wrong one. So a tolerance never makes a wrong integer
right, however the expected one is spelled: an integer token is compared exactly (``3.0000001``
is not ``3``), and no tolerance, relative or absolute, spans a difference of 1 or more (1e-6 of
``1000000007.0`` would be 1000, but ``1000000000`` is not that answer, nor ``12345670`` the answer
``12345678.5``). A tolerance covers the rounding of a real answer: ``0.333333`` for
``0.3333333333``, ``1.9999999999`` or ``2.0000001`` for ``2.0``, ``2.5`` for ``2.50000``. (So a real
answer past 2**53, where doubles lie more than 1 apart, must be printed to within 1.) A token that
is not a finite decimal (``inf``, ``nan``) matches only itself, never a finite expected value.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from collections.abc import Sequence
from typing import Any

MATCHES = ("exact", "whitespace", "float")
# [+-] digits [. digits] [e [+-] digits], or [+-] . digits [e ...]: written so that no two parts
# can match the same digits (no backtracking blow-up on a long token).
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
INTEGER = re.compile(r"[+-]?[0-9]+")
# Differences and bounds computed to 50 digits, with no exponent limit and no trap: an exponent
# past any double's gives an exact comparison, not an overflow.
_CONTEXT = decimal.Context(prec=50, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN, traps=[])


def compare_output(actual: str, expected: str, match: str = "whitespace", tol: float = 1e-6) -> bool:
    """Whether a program's stdout ``actual`` answers a case whose expected output is ``expected``.

    >>> compare_output("3 4\\n", "3  4"), compare_output("3 4\\n", "3  4", "exact")
    (True, False)
    >>> compare_output("0.3333333", "0.333333333", "float"), compare_output("0.33", "0.333", "float")
    (True, False)
    >>> compare_output("3.0000001 2.0", "3 2", "float"), compare_output("inf", "1e400", "float")
    (False, False)
    >>> compare_output("1000000000", "1000000007.0", "float"), compare_output("2.5", "2.50000", "float")
    (False, True)
    """
    if match == "exact":
        return actual == expected
    got, want = actual.split(), expected.split()
    if match == "whitespace" or len(got) != len(want):
        return got == want
    bound = _CONTEXT.create_decimal(repr(float(tol)))
    return all(a == b or _same_number(a, b, bound) for a, b in zip(got, want))


def _same_number(token: str, expected: str, tol: decimal.Decimal) -> bool:
    """Whether two tokens of the :data:`DECIMAL` grammar are the same number: exactly if
    ``expected`` is written as an integer, else within ``tol`` (absolute or relative to the
    larger), and never 1 or more apart (no tolerance bridges two integers)."""
    if not (DECIMAL.fullmatch(token) and DECIMAL.fullmatch(expected)):
        return False
    try:
        x, y = decimal.Decimal(token), decimal.Decimal(expected)
    except decimal.InvalidOperation:  # an exponent beyond decimal's range (over 10**18)
        return False
    if INTEGER.fullmatch(expected):
        return x == y
    diff = _CONTEXT.abs(_CONTEXT.subtract(x, y))
    if diff >= 1:  # relative to 1e9, 1e-6 would take 1000000000 for 1000000007.0
        return False
    return diff <= tol or diff <= _CONTEXT.multiply(tol, _CONTEXT.max_mag(x, y).copy_abs())


def check_match(where: str, match: str, tol: float) -> None:
    if match not in MATCHES:
        raise ValueError(f"{where}: match must be one of {', '.join(MATCHES)}; got {match!r}")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (0 <= tol < math.inf):
        raise ValueError(f"{where}: tol must be a non-negative finite number, got {tol!r}")


def parse_input_output(value: Any) -> tuple[list[str], list[str]]:
    """The (inputs, outputs) of an APPS-style ``input_output`` column value.

    ``value`` is a dict or its JSON text, ``{"inputs": [...], "outputs": [...]}`` of equal
    length; an item is a string or a list of lines (APPS has both). Call-based problems
    (``fn_name``) are refused: their cases are calls, not programs. Raises ``ValueError``.

    >>> parse_input_output('{"inputs": ["1 2\\\\n", ["3", "4"]], "outputs": ["3\\\\n", "7"]}')
    (['1 2\\n', '3\\n4'], ['3\\n', '7'])
    """
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ValueError(f"input_output is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(
            f"input_output must be an object with inputs and outputs, got {type(value).__name__}"
        )
    if value.get("fn_name"):
        raise ValueError("input_output with fn_name (a call-based problem) is not supported: use unit tests")
    inputs, outputs = value.get("inputs"), value.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise ValueError("input_output needs lists inputs and outputs of the same length")
    return [_text(x, "inputs") for x in inputs], [_text(x, "outputs") for x in outputs]


def _text(item: Any, key: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Sequence) and all(isinstance(line, str) for line in item):
        return "\n".join(item)
    raise ValueError(f"input_output {key} must be strings or lists of lines, got {type(item).__name__}")
