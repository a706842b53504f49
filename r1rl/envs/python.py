"""A Python interpreter for code tasks (MBPP, HumanEval): the model runs code and reads what happened.

The ``python`` environment gives the model two tools, both backed by the code sandbox
(:mod:`r1rl.rewards.sandbox`: a fresh process per run, time and memory limits, its isolation mode):

- ``run_python(code)`` runs a program and answers with what it printed, then its error (the
  traceback's last lines, or that it ran out of time or was killed), or ``(no output)``;
- ``run_tests(code)`` runs the episode's tests (the row's ``test_list``, or ``test`` with
  ``entry_point``) against the code and answers ``"3/3 tests passed."`` or the count and the first
  failure: the failing assert, its error and, for ``assert a == b``, both sides' values.

A turn that calls no tool is the model's answer (:meth:`PythonInterpreter.step`): its code block is
tested, and a failing answer comes back to the model with the report, so it can revise it within
``env.max_turns``. Answers are cut to ``max_chars`` characters (a few hundred: small models have
small contexts).
How many tests pass is decided by the sandbox's judge, outside the program, on the same test program
the ``code_task`` reward runs (:func:`r1rl.rewards.code.unit_tests`); the first failure is found by a
second, plain run (:mod:`r1rl.envs.python_child`) that only explains it. Nothing here is a reward:
the episode's verdict is the code reward tiers', which run the tests again on the final answer.

An outer loop reads the instance's counters after the episode (the instance comes back from the
tool worker with its state): :attr:`PythonInterpreter.metrics`.
"""

from __future__ import annotations

import ast
import functools
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from r1rl.envs.base import ENVIRONMENTS, Environment, Step
from r1rl.errors import UserError
from r1rl.rewards import sandbox
from r1rl.rewards.code import extract_code, prompt_helpers, unit_tests
from r1rl.rewards.sandbox import ISOLATIONS, ExecResult, Limits, UnitTestReport

MIN_CHARS = 80  # an answer must hold a traceback's last line
OUTPUT_BYTES = 16 * 1024  # what the sandbox keeps of a program's stdout and stderr; answers are far shorter


@ENVIRONMENTS.register("python")
class PythonInterpreter(Environment):
    """A sandboxed Python interpreter and the episode's tests, as two tools.

    Args:
        timeout_s: each program's time limit, wall clock and CPU, in seconds.
        memory_mb: each program's address-space limit.
        max_chars: the longest answer the model is shown, in characters (at least 80).
        isolation: the sandbox's isolation mode: ``auto``, ``namespaces`` or ``basic``.

    Counters, kept on the instance (so they come back from the tool worker with it):
    ``programs_run`` (sandbox runs: one per ``run_python``, one or two per ``run_tests``),
    ``timeouts`` (runs stopped at the time limit), ``test_runs`` (``run_tests`` calls), and
    ``tests_passed`` / ``tests_total`` (the judge's count at the last ``run_tests``). A sandbox that
    cannot start raises :class:`~r1rl.rewards.sandbox.SandboxError` (not the code's fault: the tool
    runner shows the model an error and counts it).
    """

    def __init__(
        self, timeout_s: float = 5.0, memory_mb: int = 512, max_chars: int = 400, isolation: str = "auto"
    ) -> None:
        try:
            self.limits = Limits(
                timeout_s=timeout_s, cpu_s=timeout_s, memory_mb=memory_mb, max_output_bytes=OUTPUT_BYTES
            )
        except (TypeError, ValueError) as e:
            raise UserError(f"environment 'python': {e}") from None
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < MIN_CHARS:
            raise UserError(f"environment 'python': max_chars must be int >= {MIN_CHARS}; got {max_chars!r}")
        if isolation not in ISOLATIONS:
            raise UserError(f"environment 'python': isolation must be one of {', '.join(ISOLATIONS)}")
        self.max_chars, self.isolation = max_chars, isolation
        self.tests: str | None = None  # the test program, None when the row has no usable tests
        self.judge_code = ""  # a stub prompt's helpers, run by the judge as the code_task reward does
        self.programs_run = self.timeouts = self.test_runs = self.tests_passed = self.tests_total = 0

    def reset(self, **row: Any) -> str | None:
        """Keep the row's tests (``test_list`` with ``test_imports`` / ``test_setup_code``, or ``test``
        with ``entry_point``); nothing is added to the prompt."""
        tests = unit_tests(row)
        self.tests = tests if tests is not None and _count_asserts(tests) > 0 else None
        self.judge_code = prompt_helpers(row.get("prompt", ""), row.get("entry_point")) if self.tests else ""
        self.programs_run = self.timeouts = self.test_runs = self.tests_passed = self.tests_total = 0
        return None

    @property
    def metrics(self) -> dict[str, float]:
        """The episode's counters, by name; ``tests_pass_rate`` only once ``run_tests`` has run."""
        out = {
            "programs_run": float(self.programs_run),
            "timeouts": float(self.timeouts),
            "test_runs": float(self.test_runs),
        }
        if self.tests_total:
            out["tests_pass_rate"] = self.tests_passed / self.tests_total
        return out

    def run_python(self, code: str) -> str:
        """Run a Python program and show what it printed, then its error if it failed.

        Args:
            code: the whole program to run; print() what you want to see
        """
        _check_code(code, "run_python")
        return program_output(self._run(_child_program("run", code)), self.max_chars)

    def run_tests(self, code: str) -> str:
        """Run this problem's tests on your code and show how many passed and the first failure.

        Args:
            code: your solution: the function the tests call, with its imports
        """
        _check_code(code, "run_tests")
        if self.tests is None:
            return "This problem has no tests to run."
        self.test_runs += 1
        self.programs_run += 1
        report = sandbox.run_tests(
            code, self.tests, limits=self.limits, isolation=self.isolation, judge_code=self.judge_code
        )
        self.timeouts += report.result.status == "timeout"
        self.tests_passed, self.tests_total = report.passed, report.total
        head = f"{report.passed}/{report.total} tests passed."
        if report.passed == report.total:
            return head
        return clip(f"{head} {self._why(code, report)}", self.max_chars)

    def step(self, message: Mapping[str, Any]) -> Step:
        """An answer (a turn that called no tool) is tested: passing, or a problem without tests, ends
        the episode; a failing answer is sent back with the tests' report so the model can revise it."""
        if self.tests is None:
            return Step()
        code = extract_code(str(message.get("content") or ""))
        report = self.run_tests(code) if code.strip() else "Your answer holds no code."
        if self.tests_total and self.tests_passed == self.tests_total:
            return Step()
        return Step([{"role": "user", "content": f"{report} Fix the code and answer again."}], done=False)

    def _run(self, program: str) -> ExecResult:
        self.programs_run += 1
        result = sandbox.run_program(program, limits=self.limits, isolation=self.isolation)
        self.timeouts += result.status == "timeout"
        return result

    def _why(self, code: str, report: UnitTestReport) -> str:
        """Why not every test passed: the judge's stop (time, a kill), else the first failure."""
        if report.result.status == "timeout":
            return f"The code ran past the {self.limits.timeout_s:g} s time limit and was stopped."
        if report.result.status == "killed":
            return f"The code's process was killed ({report.result.detail})."
        marker = f"@@first-failure-{secrets.token_hex(8)}@@"
        tests = f"{self.judge_code}\n{self.tests}" if self.judge_code else str(self.tests)
        result = self._run(_child_program("main", code, tests, marker))
        found = _read_report(result.stdout, marker)
        if found is None:
            if result.status == "timeout":
                return f"The code ran past the {self.limits.timeout_s:g} s time limit and was stopped."
            return f"The code ended its process ({result.detail})."
        return failure_text(found)


def failure_text(report: dict[str, Any]) -> str:
    """The model's view of a :func:`r1rl.envs.python_child.main` report.

    >>> print(failure_text({"stage": "tests", "test": "assert sq(3) == 9", "error": "AssertionError",
    ...                     "got": "6", "expected": "9"}))
    First failure:
    assert sq(3) == 9
    AssertionError: got 6, expected 9
    >>> failure_text({"stage": "code", "error": "NameError: name 'y' is not defined", "code_line": [2, "y"]})
    "Your code failed before the tests ran: NameError: name 'y' is not defined (line 2: y)"
    """
    stage, error = report.get("stage"), str(report.get("error", ""))
    where = ""
    if report.get("code_line"):
        n, text = report["code_line"]
        where = f" (line {n}: {text})" if text else f" (line {n})"
    if stage == "code":
        return f"Your code failed before the tests ran: {error}{where}"
    if stage != "tests":  # the judge failed what one interpreter passes: the tests run apart from the code
        return "Run in one interpreter with your code, the tests pass: use no names only the tests define."
    if "got" in report and "expected" in report:
        error = f"{error}: got {report['got']}, expected {report['expected']}"
    test = report.get("test")
    return f"First failure:\n{test}\n{error}{where}" if test else f"A test failed: {error}{where}"


def program_output(result: ExecResult, max_chars: int) -> str:
    """What ``run_python`` shows: stdout, then stderr and why the run stopped, within ``max_chars``.

    The end of stderr is kept (a traceback's last lines say what went wrong), the start of stdout.
    """
    err = result.stderr.rstrip("\n")
    stop = ""
    if result.status == "timeout":
        stop = f"Timeout: the program ran past its time limit ({result.detail}) and was stopped."
    elif result.status == "killed":
        stop = f"Killed: {result.detail}."
    elif result.status == "error" and not err:
        stop = f"The program ended with exit code {result.returncode}."
    err = "\n".join(t for t in (err, stop) if t)
    out, cut = result.stdout.rstrip("\n"), result.truncated  # cut: the sandbox kept only the start
    if not err:
        return clip(out, max_chars, more=cut) if out else "(no output)"
    if not out:
        return clip(err, max_chars, keep="tail")
    err = clip(err, max(max_chars * 2 // 3, max_chars - len(out) - 1), keep="tail")
    return f"{clip(out, max_chars - len(err) - 1, more=cut)}\n{err}"


def clip(text: str, max_chars: int, keep: str = "head", more: bool = False) -> str:
    """``text`` within ``max_chars`` characters: its start (``keep="head"``) or its end, saying how much
    was cut (``more``: ``text`` is already the start of a longer output; the count is a lower bound).

    >>> clip("x" * 100, 40)
    'xxxxxxxxxxxxxx\\n[... 86 more characters]'
    >>> trace = 'Traceback (most recent call last):\\n  File "<solution>", line 1\\n'
    >>> trace += "ZeroDivisionError: division by zero"
    >>> clip(trace, 80, keep="tail")
    '[... 63 characters before]\\nZeroDivisionError: division by zero'
    """
    if len(text) <= max_chars and not more:
        return text

    def marker(n: int) -> str:
        return f"[... {n} characters before]" if keep == "tail" else f"[... {n}{'+' * more} more characters]"

    kept = min(len(text), max(max_chars - len(marker(len(text))) - 1, 0))  # the marker's digits fit
    if keep == "tail":
        tail = text[len(text) - kept :]
        if not text[: len(text) - kept].endswith("\n") and "\n" in tail:  # start at a whole line
            tail = tail.split("\n", 1)[1]
        return f"{marker(len(text) - len(tail))}\n{tail}"
    return f"{text[:kept]}\n{marker(len(text) - kept)}"


def _check_code(code: object, tool: str) -> None:
    if not isinstance(code, str):
        raise TypeError(f"{tool}: code must be a string of Python, got {type(code).__name__}")


def _count_asserts(tests: str) -> int:
    try:
        return sum(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(tests)))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return 0


def _child_program(call: str, *args: str) -> str:
    """A program that calls ``call(*args)`` of :mod:`r1rl.envs.python_child` (its source, then the call)."""
    return f"{_child_source()}\n{call}({', '.join(repr(a) for a in args)})\n"


@functools.cache
def _child_source() -> str:
    return Path(__file__).with_name("python_child.py").read_text(encoding="utf-8")


def _read_report(stdout: str, marker: str) -> dict[str, Any] | None:
    """The report after ``marker`` in the run's stdout, or None (the run ended before writing one)."""
    for text in reversed(stdout.splitlines()):
        if text.startswith(marker):
            try:
                found = json.loads(text[len(marker) :])
            except ValueError:
                return None
            return found if isinstance(found, dict) else None
    return None
