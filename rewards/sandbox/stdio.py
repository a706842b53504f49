"""Judging stdin/stdout programs (APPS, CodeContests): compare each case's output in the parent.

The program runs once per case with the case's input on stdin (:func:`r1rl.rewards.sandbox.
run_io_tests`); the expected outputs never enter the sandbox, and the comparison happens here.
Three ways to compare, after the checkers competitive judges use (testlib's ``wcmp`` and
``rcmp6``; online-judge-tools' ``SplitComparator`` and ``FloatingPointNumberComparator``):

- ``exact``: the output equals the expected text, byte for byte;
- ``whitespace``: the same sequence of whitespace-separated tokens (line breaks, runs of spaces
  and trailing newlines do not matter);
- ``float``: the same tokens, where two tokens that both read as numbers may differ by ``tol``,
  absolute or relative (``math.isclose``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

MATCHES = ("exact", "whitespace", "float")


def compare_output(actual: str, expected: str, match: str = "whitespace", tol: float = 1e-6) -> bool:
    """Whether a program's stdout ``actual`` answers a case whose expected output is ``expected``.

    >>> compare_output("3 4\\n", "3  4"), compare_output("3 4\\n", "3  4", "exact")
    (True, False)
    >>> compare_output("0.3333333", "0.333333333", "float"), compare_output("0.33", "0.333", "float")
    (True, False)
    """
    if match == "exact":
        return actual == expected
    got, want = actual.split(), expected.split()
    if match == "whitespace" or len(got) != len(want):
        return got == want
    return all(a == b or _close(a, b, tol) for a, b in zip(got, want))


def _close(a: str, b: str, tol: float) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=tol, abs_tol=tol)


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
