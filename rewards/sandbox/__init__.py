"""Run untrusted (model-written) Python programs in a local sandbox, and score them, for code rewards.

Every execution gets a fresh process tree, started with ``python -I -S`` (isolated mode, standard
library only) in a new session, with a scrubbed environment (``PATH``, ``HOME``/``TMPDIR`` = a
throwaway working directory, ``LANG``), stdin from a file and stdout/stderr to files read back
with a cap. The package, by file:

- here, the public API: :func:`run_program`, :func:`run_tests`, :func:`run_io_tests`,
  :class:`Sandbox`, and mode selection;
- :mod:`.instrument`: rewriting the tests' asserts (in the parent);
- :mod:`.process` and :mod:`.modes`: starting a tree, its wall clock, killing it, classifying;
- child code, run inside the sandbox (standard library only): :mod:`.child` (supervisor,
  *init*, limits, seccomp, namespaces), :mod:`.program` (the program; for unit tests, the
  server that answers the judge), :mod:`.judge` (runs the tests), :mod:`.channel` (the wire
  between them);
- :mod:`.stdio`: comparing the outputs of stdin/stdout programs (in the parent).

Each process that runs code applies, in this order, ``resource`` limits (``RLIMIT_CPU`` soft =
CPU seconds, hard = soft + 1, ``RLIMIT_AS``, ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``,
``RLIMIT_NOFILE``, ``RLIMIT_CORE`` = 0: set in the process itself, not by a ``preexec_fn``,
which is unsafe in the threaded :class:`Sandbox` pool); as root, a random unprivileged uid of its
own for this run (``RLIMIT_NPROC`` does not apply to root, and the uid keeps the program away
from root's files and processes); ``PR_SET_NO_NEW_PRIVS`` and no capabilities; a seccomp filter
(x86_64, aarch64) refusing ``socket`` (all families but ``AF_UNIX``, and that too without a
network namespace), ``ptrace``, ``process_vm_*``, ``unshare``/``setns``/namespace flags of
``clone``, ``clone3``, ``bpf``, ``userfaultfd``, ``perf_event_open``, ``io_uring_setup`` and the
key-ring calls, and any foreign system-call ABI (x32, ``int 0x80``).

Unit tests (:func:`run_tests`) are decided by a *judge*, a separate process that never runs the
program's code: the program runs in its own process and answers the judge's calls (the entry
point, helpers, methods of its objects) through a pipe, with plain data decoded by a bounded
decoder or opaque handles (:mod:`.channel` says how each type travels; nothing the program says
about an object, its kind, module or name, is believed, and the names the tests' own text binds,
their imports and ``judge_code``'s, are never asked of the program: :mod:`.judge`). The tests,
the expected values, the verdicts and the verdict channel's nonce exist only in the judge and in
this process, so a program cannot read or forge them however it digs (frames, ``gc``, ``ctypes``,
its own memory, its descriptors; but see ``basic`` mode without root below): it can only answer
calls, and the judge compares the answers.
An ``assert`` anywhere in the test code (also inside ``def check(candidate)``) counts as passed
only when it ran, never failed, and every top-level test statement it ran in completed (an
assert in a loop whose later round was cut short outside it, by the program or the tests' own
error, was never decided on that round: it fails); if the program's process dies, runs out of
time or breaks the protocol, the judge stops and every assert not decided by then fails.

Two isolation modes; ``"auto"`` probes them once per process, in this order:

``namespaces`` (where unprivileged user namespaces or root allow it): the supervisor enters new
    mount, PID, network and IPC namespaces (plus a user namespace when not root) through libc
    (``os.unshare`` is 3.12+). *init* is PID 1 of the new PID namespace: when it exits, the
    kernel kills every process left in it, and the program cannot address any process outside.
    The network namespace has only a down loopback. The filesystem is built from an allow-list
    (:func:`.modes.view`) on an empty tmpfs that becomes the root (``pivot_root``; the host's
    root is detached): read-only, the interpreter's executable, standard library,
    ``lib-dynload`` and ``libpython`` (its ``site-packages`` covered: the child runs ``-S``),
    the shared libraries (``/usr/lib/x86_64-linux-gnu`` on a multiarch system, else
    ``/usr/lib``; ``/usr/lib64``; the ``/lib`` links),
    ``/etc/ld.so.cache`` and ``/dev/null``, ``zero``, ``full``, ``random``, ``urandom``; fresh
    size-limited tmpfs at ``/tmp`` (the working directories live there) and ``/dev/shm``, and a
    fresh ``/proc`` that shows only the sandbox. Nothing else of the host exists there: not the
    caller's home, not the repository (the parent hands the child its code), not the data sets
    or caches that hold the tests' answers. For unit tests the program runs in a second, nested
    PID namespace with a ``/proc`` of its own and a mount namespace where the judge's directory
    is an empty tmpfs: it cannot see, signal or trace the judge (nor read its memory, which is
    not dumpable), and as root the judge also has a uid other than the program's.
``basic`` (no namespaces): limits, uids (as root), seccomp, the supervisor trampoline (the
    program's parent is *init*, not the caller) and *init* as a child subreaper that kills
    every descendant left when the program exits; the whole process group is SIGKILLed too.
    For unit tests: as root the judge and the program have different uids and the judge is not
    dumpable, so the program can neither read, trace nor signal it; without root the program
    shares the judge's uid: it still cannot read the judge's memory or descriptors (not
    dumpable, no ``ptrace``), but it can signal it (which only loses it credit) and, having the
    caller's uid, it can read this process's memory and descriptors, where the nonce and the
    tests are: no guarantee against a program that sets out to do so.

Without seccomp (other architectures), network access is refused by a Python prelude that
swaps ``_socket.socket`` for a subclass refusing non-``AF_UNIX`` families (best effort).
:func:`network_isolation` says which mechanism is active, :func:`isolation_mode` which mode.

What is *not* contained (be aware): ``basic`` mode without root, as above, and its program
keeps the caller's uid, so it can read and write the caller's files, leave files in ``/tmp``,
signal the caller's other processes, and a daemon that kills *init* first can escape the
clean-up; ``basic`` mode as root needs the interpreter to be readable by other users;
``basic`` mode hides no file: a program reads whatever its uid may read (every world-readable
file, data sets with the tests' answers included), so score untrusted code in ``namespaces``
mode; kernel bugs: this is not a VM.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from . import modes, process
from .instrument import Instrumented, compile_helpers, drop_constant_asserts, instrument
from .process import ExecResult, Limits, SandboxError, Status
from .stdio import MATCHES, check_match, compare_output, parse_input_output

__all__ = [
    "ISOLATIONS",
    "MATCHES",
    "ExecResult",
    "IOTestReport",
    "Limits",
    "Sandbox",
    "SandboxError",
    "Status",
    "UnitTestReport",
    "compare_output",
    "drop_constant_asserts",
    "isolation_mode",
    "network_isolation",
    "parse_input_output",
    "run_io_tests",
    "run_program",
    "run_tests",
]

ISOLATIONS = ("auto", "namespaces", "basic")


@dataclass(frozen=True)
class UnitTestReport:
    """Asserts passed out of those in the test code, and the program's run.

    ``judged``: the judge got through the test code, or stopped it because the program was gone
    (then the asserts it had not decided failed); False only when the test code itself ran out
    of time or the judge died.
    """

    passed: int
    total: int
    result: ExecResult
    judged: bool = True

    @property
    def fraction(self) -> float:
        return self.passed / self.total


@dataclass(frozen=True)
class IOTestReport:
    """Cases whose output matched out of all cases, and the run of each case that ran."""

    passed: int
    total: int
    results: tuple[ExecResult, ...]

    @property
    def fraction(self) -> float:
        return self.passed / self.total


def run_program(
    code: str, *, stdin: str = "", limits: Limits | None = None, isolation: str = "auto"
) -> ExecResult:
    """Run ``code`` as a program in a fresh sandbox and return its outcome.

    >>> r = run_program("print(6 * int(input()))", stdin="7")
    >>> r.status, r.stdout
    ('ok', '42\\n')
    >>> run_program("1 / 0").status
    'error'
    """
    _check_str(code, "run_program", "code")
    _check_str(stdin, "run_program", "stdin")
    limits, mode = _check_options("run_program", limits, isolation)
    return _run_program(code, stdin, limits, mode)


def _run_program(code: str, stdin: str, limits: Limits, mode: str) -> ExecResult:
    run = process.execute({"kind": "program", "code": code}, stdin, limits, mode)
    return process.classify_program(run, limits)


def run_tests(
    solution_code: str,
    test_code: str,
    *,
    limits: Limits | None = None,
    isolation: str = "auto",
    judge_code: str = "",
) -> UnitTestReport:
    """Run ``solution_code``, then score every ``assert`` in ``test_code`` (MBPP/HumanEval style).

    The judge runs the tests and reaches the solution only through calls (see the module
    docstring); if the solution's process dies or runs out of time midway, the asserts not
    decided by then fail (``UnitTestReport.judged`` says whether the judge got through).
    ``judge_code``: trusted helpers the tests use (e.g. the functions a HumanEval prompt defines
    besides the entry point), run in the judge, so a solution cannot redefine them.

    >>> tests = "assert sq(2) == 4\\nassert sq(3) == 9\\nassert sq(0) == 1"
    >>> rep = run_tests("def sq(x): return x * x", tests)
    >>> rep.passed, rep.total
    (2, 3)
    """
    _check_str(solution_code, "run_tests", "solution_code")
    _check_str(test_code, "run_tests", "test_code")
    _check_str(judge_code, "run_tests", "judge_code")
    tests, helpers = instrument(test_code), compile_helpers(judge_code)
    limits, mode = _check_options("run_tests", limits, isolation)
    return _run_tests(solution_code, tests, helpers, limits, mode)


def _run_tests(
    solution: str, tests: Instrumented, helpers: bytes | None, limits: Limits, mode: str
) -> UnitTestReport:
    nonce = secrets.token_hex(16)  # known here and to the judge only
    judge = {
        "codes": tests.codes,
        "names": tests.names,
        "imports": tests.imports,
        "modules": tests.modules,
        "free": tests.free,
        "candidates": tests.candidates,
        "subjects": tests.subjects,
        "judge_code": helpers,
        "nonce": nonce,
        "budget_s": limits.timeout_s,
        "max_result_bytes": limits.max_result_bytes,
    }
    run = process.execute({"kind": "tests", "code": solution}, "", limits, mode, judge=judge)
    passed, gone, ended, notes = _read_verdicts(run.verdicts, nonce, tests)
    result = process.classify_tests(run, limits, gone, ended)
    if notes:
        result = replace(result, detail="; ".join([result.detail, *notes]))
    return UnitTestReport(passed, tests.total, result, judged=ended)


def _read_verdicts(raw: bytes, nonce: str, tests: Instrumented) -> tuple[int, str | None, bool, list[str]]:
    """(asserts with a ``P`` line and no ``F`` line, why the program was gone, end seen, notes).

    A test statement with a ``begin`` line and no ``done`` line was under way when the judge was
    killed (its wall clock) or died: every assert it could have run fails, those written in it
    and those in a function, though a pass of theirs came before (an assert in a loop is decided
    only when the loop is done).
    """
    passed: set[int] = set()
    failed: set[int] = set()
    gone, ended, notes, under_way = None, False, [], set()
    for line in raw.decode("utf-8", "replace").splitlines():
        head, _, rest = line.partition(" ")
        if head != nonce:
            continue
        word, _, text = rest.partition(" ")
        if word.isdigit() and int(word) < tests.total and text in ("P", "F"):
            (passed if text == "P" else failed).add(int(word))
        elif word == "begin" and text.isdigit() and int(text) < len(tests.held):
            under_way.add(int(text))
        elif word == "done" and text.isdigit():
            under_way.discard(int(text))
        elif word == "gone":
            gone = text
        elif word == "end":
            ended = True
        elif word == "crash":
            raise SandboxError(f"the judge failed: {text}")
        else:
            notes.append(rest)
    for k in under_way:
        failed.update(tests.held[k], tests.in_functions)
    return len(passed - failed), gone, ended, notes


def run_io_tests(
    code: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    match: str = "whitespace",
    tol: float = 1e-6,
    limits: Limits | None = None,
    isolation: str = "auto",
) -> IOTestReport:
    """Run ``code`` once per case with ``inputs[i]`` on stdin; count outputs matching ``outputs[i]``.

    A case passes when the run is ``ok`` and :func:`compare_output` accepts its stdout; the
    expected outputs stay in this process. After a case that runs out of time the remaining cases
    are not run and fail (a program that hangs on one input is charged once, not once per case).

    >>> rep = run_io_tests("print(sum(map(int, input().split())))", ["1 2", "3 4"], ["3", "8"])
    >>> rep.passed, rep.total
    (1, 2)
    """
    _check_str(code, "run_io_tests", "code")
    for name, items in (("inputs", inputs), ("outputs", outputs)):
        if isinstance(items, str) or not isinstance(items, Sequence):
            raise TypeError(f"run_io_tests: {name} must be a sequence of str, got {type(items).__name__}")
        for i, item in enumerate(items):
            _check_str(item, "run_io_tests", f"{name}[{i}]")
    if len(inputs) != len(outputs) or not inputs:
        raise ValueError(f"run_io_tests: {len(inputs)} inputs but {len(outputs)} outputs (need >= 1 of each)")
    check_match("run_io_tests", match, tol)
    limits, mode = _check_options("run_io_tests", limits, isolation)
    results, passed = [], 0
    for stdin, expected in zip(inputs, outputs):
        r = _run_program(code, stdin, limits, mode)
        results.append(r)
        passed += r.ok and not r.truncated and compare_output(r.stdout, expected, match, tol)
        if r.status == "timeout":
            break
    return IOTestReport(passed, len(inputs), tuple(results))


class Sandbox:
    """A pool of workers, each driving one sandboxed process tree at a time.

    >>> with Sandbox(max_workers=2) as sb:
    ...     [r.stdout for r in sb.run_many(["print(1)", "print(2)"])]
    ['1\\n', '2\\n']
    """

    def __init__(
        self, max_workers: int | None = None, *, limits: Limits | None = None, isolation: str = "auto"
    ) -> None:
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ValueError(f"Sandbox: max_workers must be a positive int or None, got {max_workers!r}")
        self.limits, _ = _check_options("Sandbox", limits, isolation, resolve=False)
        self.isolation = isolation
        self.max_workers = max_workers or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="r1rl-sandbox")

    def run(self, code: str, stdin: str = "") -> ExecResult:
        return run_program(code, stdin=stdin, limits=self.limits, isolation=self.isolation)

    def run_many(self, codes: Sequence[str], stdins: Sequence[str] | None = None) -> list[ExecResult]:
        """Run every program (in parallel, up to ``max_workers``); results in input order."""
        stdins = [""] * len(codes) if stdins is None else list(stdins)
        if len(stdins) != len(codes):
            raise ValueError(f"Sandbox.run_many: {len(codes)} programs but {len(stdins)} stdins")
        for i, (c, s) in enumerate(zip(codes, stdins)):
            _check_str(c, "Sandbox.run_many", f"codes[{i}]")
            _check_str(s, "Sandbox.run_many", f"stdins[{i}]")
        return list(self._pool.map(self.run, codes, stdins))

    def run_tests(self, solution_code: str, test_code: str, judge_code: str = "") -> UnitTestReport:
        return run_tests(
            solution_code, test_code, limits=self.limits, isolation=self.isolation, judge_code=judge_code
        )

    def run_tests_many(self, solutions: Sequence[str], tests: Sequence[str]) -> list[UnitTestReport]:
        """Score ``solutions[i]`` against ``tests[i]`` for every i, in parallel."""
        if len(solutions) != len(tests):
            raise ValueError(f"Sandbox.run_tests_many: {len(solutions)} solutions but {len(tests)} tests")
        return list(self._pool.map(self.run_tests, solutions, tests))

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def isolation_mode(isolation: str = "auto") -> str:
    """The mode that ``isolation`` resolves to here: ``"namespaces"`` or ``"basic"``."""
    _, mode = _check_options("isolation_mode", None, isolation)
    return mode


def network_isolation(isolation: str = "auto") -> str:
    """How network access is cut: ``netns+seccomp``, ``netns``, ``seccomp`` or ``python-prelude``."""
    plan = modes.plan(isolation_mode(isolation))
    if plan.namespaces:
        return "netns+seccomp" if plan.seccomp else "netns"
    return "seccomp" if plan.seccomp else "python-prelude"


# --- checks at the entry points, and mode selection ------------------------------------------------


def _check_str(value: object, where: str, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be str, got {type(value).__name__}")


def _check_options(
    where: str, limits: Limits | None, isolation: str, resolve: bool = True
) -> tuple[Limits, str]:
    if limits is not None and not isinstance(limits, Limits):
        raise TypeError(f"{where}: limits must be a Limits or None, got {type(limits).__name__}")
    if isolation not in ISOLATIONS:
        raise ValueError(f"{where}: isolation must be one of {', '.join(ISOLATIONS)}; got {isolation!r}")
    return limits or Limits(), _select_mode(isolation) if resolve else isolation


_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}


def _probe(mode: str) -> str | None:
    """``None`` if ``mode`` works here (a program and a judged test), else why not; once per process."""
    with _probe_lock:
        if mode not in _probed:
            try:
                _probed[mode] = _probe_once(mode)
            except (SandboxError, OSError) as e:
                _probed[mode] = str(e)
        return _probed[mode]


def _probe_once(mode: str) -> str | None:
    limits = Limits(timeout_s=30)
    res = _run_program("import json, math\nprint(json.dumps(math.sqrt(16.0)))\n", "", limits, mode)
    if res.ok and res.stdout == "4.0\n":
        tests = instrument("import math\nassert f() == math.sqrt(16.0)\n")
        rep = _run_tests("def f():\n    return 4.0\n", tests, None, limits, mode)
        if rep.passed == 1:
            return None
        res = rep.result
    why = (res.stderr.strip().splitlines()[-1:] or [res.detail])[0]
    if mode == "basic" and modes.plan(mode).root:
        why += f" (as root, programs run as a uid of their own that must be able to read {sys.base_prefix})"
    return f"probe {res.status}: {why}"


def _select_mode(isolation: str) -> str:
    if sys.platform != "linux":
        raise SandboxError(f"the sandbox needs Linux, not {sys.platform}")
    order = ("namespaces", "basic") if isolation == "auto" else (isolation,)
    reasons = []
    for mode in order:
        why = _probe(mode)
        if why is None:
            return mode
        reasons.append(f"{mode}: {why}")
    raise SandboxError(f"no usable sandbox isolation ({'; '.join(reasons)})")
