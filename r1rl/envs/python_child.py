"""Child code, run inside the sandbox (standard library only): the ``python`` environment's two programs.

:class:`~r1rl.envs.python.PythonInterpreter` runs this file's source as a sandboxed program, followed
by one call:

- ``run(code)`` runs the model's program as ``python`` runs a file, but with stdout flushed at every
  line, so that what it printed before it was stopped (an endless loop) is still shown, and with a
  traceback that starts at the model's code (``File "<code>"``);
- ``main(code, tests, marker)`` finds the first failing test: it runs ``code``, then the ``tests``
  one top-level statement at a time in the same namespace, as one interpreter would, and stops at the
  first statement that raises. What the program prints goes nowhere; the report (JSON, after
  ``marker``) goes to the stdout the program started with. The report describes; it decides nothing:
  it runs in the program's own interpreter, so a program could change it. How many tests pass is the
  sandbox judge's count, taken outside the program (:func:`r1rl.rewards.sandbox.run_tests`); this
  only explains the judge's failures.
"""

from __future__ import annotations

import ast
import json
import linecache
import os
import sys
import traceback
from types import FrameType
from typing import Any

CODE_FILE, TESTS_FILE = "<code>", "<tests>"  # the file names the report's line numbers refer to
MAX_REPR = 80  # characters of a value shown in the report


def run(code: str) -> None:
    """Run ``code`` as ``__main__``; an uncaught exception prints its traceback and exits with 1."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper here
    linecache.cache[CODE_FILE] = (len(code), None, code.splitlines(True), CODE_FILE)  # the traceback's lines
    try:
        exec(compile(code, CODE_FILE, "exec"), {"__name__": "__main__"})
    except SystemExit:
        raise
    except BaseException as e:
        sys.stdout.flush()
        tb = e.__traceback__.tb_next if e.__traceback__ else None  # from the code's frames on, not ours
        traceback.print_exception(type(e), e, tb)
        sys.exit(1)


def main(code: str, tests: str, marker: str) -> None:
    """Run ``code`` then ``tests``; write ``marker`` and the report (one JSON line) to stdout.

    The report's ``stage`` is where the run stopped: ``code`` (the code itself raised), ``tests``
    (a test statement raised) or ``done``; with a failure, ``error`` (``Type: message``), and where
    known ``code_line`` (``[line, text]`` of the code where it was raised), ``test`` (the failing
    assert's text) and, for a failed ``assert a == b``, ``got`` and ``expected`` (the two sides).
    """
    report_fd = os.dup(1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # what the program prints is not the report
    os.dup2(quiet, 2)
    tree = ast.parse(tests, TESTS_FILE)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    report: dict[str, Any] = {"stage": "code"}
    try:
        exec(compile(code, CODE_FILE, "exec"), namespace)
        report["stage"] = "tests"
        for statement in tree.body:
            exec(compile(ast.Module([statement], []), TESTS_FILE, "exec"), namespace)
        report["stage"] = "done"
    except BaseException as error:  # SystemExit too: whatever stops the program stops the tests
        report.update(failure(error, code, tests, tree))
    os.write(report_fd, (marker + json.dumps(report) + "\n").encode("utf-8", "replace"))


def failure(error: BaseException, code: str, tests: str, tree: ast.Module) -> dict[str, Any]:
    """What the report says of ``error``: its text, the code's line and the test it broke."""
    out: dict[str, Any] = {"error": describe(error)}
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    in_code = [n for f, n in frames if f.f_code.co_filename == CODE_FILE]
    if isinstance(error, SyntaxError) and error.filename == CODE_FILE:
        in_code = [error.lineno or 0]
    if in_code:
        out["code_line"] = [in_code[-1], line(code, in_code[-1])]
    in_tests = [(f, n) for f, n in frames if f.f_code.co_filename == TESTS_FILE]
    if in_tests:
        frame, n = in_tests[-1]
        node = assert_at(tree, n)
        out["test"] = (ast.get_source_segment(tests, node) if node else None) or line(tests, n)
        if node is not None and isinstance(error, AssertionError) and not in_code:
            out.update(sides(node, frame))
    return out


def describe(error: BaseException) -> str:
    """``Type: message``, as the last line of a traceback says it."""
    name = type(error).__name__
    try:
        text = error.msg if isinstance(error, SyntaxError) else str(error)
    except BaseException:  # a str() that raises is the program's, not ours
        text = ""
    return f"{name}: {shorten(str(text), 2 * MAX_REPR)}" if text else name


def sides(node: ast.Assert, frame: FrameType) -> dict[str, str]:
    """``got`` and ``expected`` of a failed ``assert a == b``, evaluated again in its frame; else ``{}``."""
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return {}
    out = {}
    for key, expr in (("got", test.left), ("expected", test.comparators[0])):
        try:
            value = eval(compile(ast.Expression(expr), TESTS_FILE, "eval"), frame.f_globals, frame.f_locals)
            out[key] = shorten(repr(value), MAX_REPR)
        except BaseException:  # the second evaluation failed (a side effect, a flaky call): say nothing
            return {}
    return out


def assert_at(tree: ast.Module, lineno: int) -> ast.Assert | None:
    """The ``assert`` whose lines include ``lineno`` (asserts never nest; the first of a line's)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and node.lineno <= lineno <= (node.end_lineno or node.lineno):
            return node
    return None


def line(source: str, lineno: int) -> str:
    lines = source.splitlines()
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""


def shorten(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
