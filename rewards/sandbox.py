"""Run untrusted (model-written) Python programs in a local sandbox, for code rewards.

Every execution gets a fresh process tree, started with ``python -I -S`` (isolated mode, standard
library only) in a new session, with a scrubbed environment (``PATH``, ``HOME``/``TMPDIR`` = a
throwaway working directory, ``LANG``), stdin from a file and stdout/stderr to files read back
with a cap (nameless files, out of the program's reach but through its own fds). The tree is::

    test process ── supervisor (new session) ── init ── worker (runs the program)

The supervisor and init are this module's own code; only the worker runs the program, after it
has applied, in this order:

- ``resource`` limits: ``RLIMIT_CPU`` (soft = CPU seconds, hard = soft + 1), ``RLIMIT_AS``,
  ``RLIMIT_NPROC``, ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_CORE`` = 0. They are set in the
  worker itself rather than by a ``preexec_fn``, which is unsafe in a process that runs threads
  (the :class:`Sandbox` pool does) and could deadlock between ``fork`` and ``exec``;
- as root, a switch to a random unprivileged uid of its own for this run (``RLIMIT_NPROC`` does not
  apply to root, and the uid keeps the program away from root's files and processes);
- ``PR_SET_NO_NEW_PRIVS`` and no capabilities;
- a seccomp filter (x86_64, aarch64) refusing ``socket`` (all families but ``AF_UNIX``, and that too
  without a network namespace), ``ptrace``, ``process_vm_*``, ``unshare``/``setns``/namespace
  flags of ``clone``, ``clone3``, ``bpf``, ``userfaultfd``, ``perf_event_open``, ``io_uring_setup``
  and the key-ring calls, and any foreign system-call ABI (x32, ``int 0x80``).

Two isolation modes; ``"auto"`` probes them once per process, in this order:

``namespaces`` (used where unprivileged user namespaces or root allow it): the supervisor
    ``unshare``-s new mount, PID, network and IPC namespaces (plus a user namespace when not root)
    through libc, so it works on Python 3.10 and 3.11 too (``os.unshare`` is 3.12+). *init* is
    PID 1 of the new PID namespace: when it exits, the kernel kills every process left in it
    (daemons included), and the program cannot address any process outside. The network
    namespace has only a down loopback. The mount namespace is made private, every mount is
    re-mounted read-only, fresh size-limited tmpfs are mounted on ``/tmp`` (the working
    directory lives there) and ``/dev/shm``, credentials under the caller's home (``~/.ssh``,
    ``~/.cache``, ``~/.config``, ``~/.aws``, ``~/.netrc`` ...) are covered, a fresh ``/proc`` shows
    only the sandbox, and, as root, a home directory that holds the interpreter (pyenv in
    ``/root``) is replaced by an empty tmpfs that shows just the interpreter.
``basic`` (no namespaces): limits, uid switch (as root), seccomp, the supervisor trampoline (the
    program's parent is *init*, not the caller) and *init* as a child subreaper that kills every
    descendant left when the program exits; the whole process group is SIGKILLed too. Weaker,
    see below.

Without seccomp (other architectures), network access is refused by a Python prelude that
swaps ``_socket.socket`` for a subclass refusing non-``AF_UNIX`` families (best effort).
:func:`network_isolation` says which mechanism is active, :func:`isolation_mode` which mode.

Scoring unit tests (:func:`run_tests`): every ``assert`` in the test code, wherever it is (also
inside ``def check(candidate)``), is rewritten into a call that records it, so a failing or
crashing assert does not hide the others. Results go to a dedicated file descriptor as lines
prefixed with a random per-run nonce; an assert counts as passed only when it ran and never
failed. Cheap reward hacks do not score: printing a fake summary, ``sys.exit(0)``/``os._exit(0)``,
patching ``builtins`` (restored before every test statement) or ``AssertionError``, replacing the
recording hook, returning an object whose ``__eq__`` always says True (comparisons in asserts
accept only plain data of any types, or two values of the same type).

What is *not* contained (be aware):

- the harness runs in the program's own interpreter, so a program that deliberately digs into
  the harness (frames, ``gc``, ``ctypes`` writes into memory) can forge test results;
- ``basic`` mode as non-root: the program keeps the caller's uid, so it can read and write the
  caller's files, leave files in ``/tmp``, signal the caller's other processes if it finds their
  PIDs, and a daemon that kills *init* first can escape the clean-up;
- ``basic`` mode as root needs the interpreter to be readable by other users;
- ``namespaces`` without root: the caller's files stay readable (writes are refused), apart from
  the covered credential paths;
- kernel bugs: this is not a VM.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import marshal
import math
import os
import platform
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

Status = Literal["ok", "error", "timeout", "killed"]
ISOLATIONS = ("auto", "namespaces", "basic")

_NS_WORKDIR = "/tmp/sandbox"  # inside the sandbox's private /tmp
_TAG = "r1rl-sandbox"  # in every sandbox process's command line, to find strays
_CHECK_NAME = "__r1rl_check__"
_HELPER_NAME = "__r1rl__"
_MARK = "__r1rl_assert__:"
_MAX_RESULTS_BYTES = 1 << 20
# Credentials a program could read from the caller's home (namespaces mode covers them).
_HIDE_IN_HOME = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".config",
    ".cache",
    ".docker",
    ".kube",
    ".huggingface",
    ".netrc",
    ".git-credentials",
    ".pypirc",
    ".npmrc",
    ".password-store",
    ".local/share/keyrings",
)
# seccomp: audit arch, system-call numbers (asm/unistd_64.h, asm-generic/unistd.h).
_SECCOMP = {
    "x86_64": {
        "arch": 0xC000003E,
        "x32": True,
        "socket": 41,
        "clone": 56,
        "clone3": 435,
        # ptrace, process_vm_readv/writev, unshare, setns, bpf, userfaultfd, perf_event_open,
        # keyctl, add_key, request_key, io_uring_setup
        "deny": [101, 310, 311, 272, 308, 321, 323, 298, 250, 248, 249, 425],
    },
    "aarch64": {
        "arch": 0xC00000B7,
        "x32": False,
        "socket": 198,
        "clone": 220,
        "clone3": 435,
        "deny": [117, 270, 271, 97, 268, 280, 282, 241, 219, 217, 218, 425],
    },
}


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not the program's fault)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one execution; defaults suit MBPP/HumanEval-sized programs.

    ``max_processes`` counts every task of the program (processes and threads, itself included);
    ``tmp_mb`` is the size of the private ``/tmp`` (and ``/dev/shm``) in namespaces mode.
    """

    timeout_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 16
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 64 * 1024
    tmp_mb: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            kinds = (int,) if f.type == "int" else (int, float)
            if isinstance(v, bool) or not isinstance(v, kinds):
                raise TypeError(f"Limits.{f.name} must be {f.type}, got {type(v).__name__} ({v!r})")
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"Limits.{f.name} must be a positive finite number, got {v!r}")


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one execution.

    ``status``: ``ok`` (exit 0), ``error`` (non-zero exit, e.g. an uncaught exception),
    ``timeout`` (wall-clock or CPU-time limit), ``killed`` (a signal, e.g. a segmentation fault;
    Python ignores SIGXFSZ, so writing past the file-size limit is an ``OSError``: ``error``).
    ``returncode`` is the exit code, ``-signal`` for a signal, ``None`` when the wall clock ran
    out. ``detail`` says why in words; ``truncated`` that stdout or stderr was cut at
    ``Limits.max_output_bytes``.
    """

    status: Status
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float | None = None
    detail: str = ""
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class UnitTestReport:
    """Asserts passed out of those in the test code, and the run that produced them."""

    passed: int
    total: int
    result: ExecResult

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
    result, _ = _execute({"kind": "program", "code": code}, stdin, limits, mode)
    return result


def run_tests(
    solution_code: str, test_code: str, *, limits: Limits | None = None, isolation: str = "auto"
) -> UnitTestReport:
    """Run ``solution_code`` then score every ``assert`` in ``test_code`` (MBPP/HumanEval style).

    >>> tests = "assert sq(2) == 4\\nassert sq(3) == 9\\nassert sq(0) == 1"
    >>> rep = run_tests("def sq(x): return x * x", tests)
    >>> rep.passed, rep.total
    (2, 3)
    """
    _check_str(solution_code, "run_tests", "solution_code")
    _check_str(test_code, "run_tests", "test_code")
    statements, total = _instrument(drop_constant_asserts(test_code))
    limits, mode = _check_options("run_tests", limits, isolation)
    nonce = secrets.token_hex(16)
    job = {"kind": "tests", "code": solution_code, "tests": statements, "mark": _MARK, "check": _CHECK_NAME}
    result, lines = _execute(job, "", limits, mode, nonce=nonce)
    return UnitTestReport(_count_passed(lines, nonce, total), total, result)


def drop_constant_asserts(test_code: str) -> str:
    """``test_code`` with asserts of a true constant (``assert True, "msg"``) replaced by ``pass``.

    :func:`run_tests` finds each assert by a marker constant in its instrumented lambda, which
    CPython's constant folding removes when the asserted expression is itself a constant, so
    ``assert True`` would never count as passed (36 of HumanEval's 164 canonical solutions have
    one). Such an assert checks nothing, so dropping it changes no outcome. Code without one is
    returned unchanged.

    >>> drop_constant_asserts("def check(c):\\n    assert True, 'debug'\\n    assert c(1) == 1\\n")
    'def check(c):\\n    pass\\n    assert c(1) == 1'
    """
    try:
        tree = ast.parse(test_code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return test_code  # the reward reports unparsable tests itself
    found = False
    for node in ast.walk(tree):
        for body in ("body", "orelse", "finalbody"):
            stmts = getattr(node, body, None)
            if not isinstance(stmts, list):
                continue
            for i, stmt in enumerate(stmts):
                if isinstance(stmt, ast.Assert) and _true_constant(stmt.test):
                    stmts[i] = ast.copy_location(ast.Pass(), stmt)
                    found = True
    return ast.unparse(tree) if found else test_code


def _true_constant(expr: ast.expr) -> bool:
    try:
        return bool(ast.literal_eval(expr))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


class Sandbox:
    """A pool of workers, each driving one sandboxed subprocess at a time.

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

    def run_tests(self, solution_code: str, test_code: str) -> UnitTestReport:
        return run_tests(solution_code, test_code, limits=self.limits, isolation=self.isolation)

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
    plan = _plan(isolation_mode(isolation))
    if plan.namespaces:
        return "netns+seccomp" if plan.seccomp else "netns"
    return "seccomp" if plan.seccomp else "python-prelude"


# --- checks at the entry points ---------------------------------------------------------------


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


# --- unit-test instrumentation (in the caller) -------------------------------------------------

_GUARDED_OPS = {
    ast.Eq: "Eq",
    ast.NotEq: "NotEq",
    ast.Lt: "Lt",
    ast.LtE: "LtE",
    ast.Gt: "Gt",
    ast.GtE: "GtE",
    ast.In: "In",
    ast.NotIn: "NotIn",
}


class _GuardCompares(ast.NodeTransformer):
    """``a == b`` -> ``__r1rl__.cmp("Eq", a, b)``: plain data, or two values of the same type."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        op = _GUARDED_OPS.get(type(node.ops[0])) if len(node.ops) == 1 else None
        if op is None:
            return node
        fn = ast.Attribute(ast.Name(_HELPER_NAME, ast.Load()), "cmp", ast.Load())
        return ast.copy_location(ast.Call(fn, [ast.Constant(op), node.left, node.comparators[0]], []), node)


class _RecordAsserts(ast.NodeTransformer):
    """``assert t`` -> ``__r1rl_check__(i, lambda __r1rl__: ("<mark>i", t')[1])``.

    The marker constant lets the child find each assert's own code object, so the recorder
    accepts only the genuine lambda for index ``i``; the helper is the lambda's parameter, not
    a global the program could rebind.
    """

    def __init__(self) -> None:
        self.count = 0

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        idx, self.count = self.count, self.count + 1
        test = _GuardCompares().visit(node.test)
        body = ast.Subscript(
            ast.Tuple([ast.Constant(f"{_MARK}{idx}"), test], ast.Load()), ast.Constant(1), ast.Load()
        )
        args = ast.arguments(
            posonlyargs=[], args=[ast.arg(_HELPER_NAME)], kwonlyargs=[], kw_defaults=[], defaults=[]
        )
        call = ast.Call(ast.Name(_CHECK_NAME, ast.Load()), [ast.Constant(idx), ast.Lambda(args, body)], [])
        return ast.copy_location(ast.Expr(call), node)


def _instrument(test_code: str) -> tuple[list[str], int]:
    """Top-level statements of the rewritten test code, and the number of asserts."""
    try:
        tree = ast.parse(test_code, "<tests>")
    except SyntaxError as e:
        raise ValueError(f"run_tests: test_code is not valid Python (line {e.lineno}: {e.msg})") from None
    recorder = _RecordAsserts()
    tree = ast.fix_missing_locations(recorder.visit(tree))
    if recorder.count == 0:
        raise ValueError("run_tests: test_code has no assert statements to score")
    try:
        compile(tree, "<tests>", "exec")
    except SyntaxError as e:
        raise ValueError(
            f"run_tests: cannot instrument the asserts of test_code (line {e.lineno}: {e.msg})"
        ) from None
    return [ast.unparse(stmt) for stmt in tree.body], recorder.count


def _count_passed(lines: bytes, nonce: str, total: int) -> int:
    """Asserts with a ``<nonce> i P`` line and no ``<nonce> i F`` line."""
    passed, failed = set(), set()
    for line in lines.decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == nonce and parts[1].isdigit() and int(parts[1]) < total:
            (passed if parts[2] == "P" else failed).add(int(parts[1]))
    return len(passed - failed)


# --- isolation plan and mode selection ---------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    namespaces: bool
    userns: bool  # namespaces without root: a user namespace too
    root: bool  # switch to a per-run uid
    reveal: list  # [(untraversable dir, [interpreter dirs under it])], root + namespaces
    seccomp: dict | None


@functools.cache
def _plan(mode: str) -> _Plan:
    """What isolation ``mode`` amounts to for this process (fixed for its lifetime)."""
    root = os.geteuid() == 0
    namespaces = mode == "namespaces"
    needed = _interpreter_dirs()
    supported = "Seccomp:" in Path("/proc/self/status").read_text()
    return _Plan(
        namespaces=namespaces,
        userns=namespaces and not root,
        root=root,
        reveal=_reveal_groups(needed) if namespaces and root else [],
        seccomp=_SECCOMP.get(platform.machine()) if supported else None,
    )


@functools.cache
def _real_python() -> str:
    return os.path.realpath(sys.executable)


@functools.cache
def _interpreter_dirs() -> list[str]:
    """Directories the child interpreter reads modules from (outermost only)."""
    dirs = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)})
    return [d for d in dirs if not any(d != o and d.startswith(o.rstrip("/") + "/") for o in dirs)]


def _reveal_groups(needed: list[str]) -> list[tuple[str, list[str]]]:
    """Group interpreter dirs by their outermost ancestor that other users cannot traverse."""
    groups: dict[str, list[str]] = {}
    for path in needed:
        parts = Path(path).parts
        for i in range(2, len(parts)):
            ancestor = os.path.join(*parts[:i])
            if not os.stat(ancestor).st_mode & 0o001:
                groups.setdefault(ancestor, []).append(path)
                break
    return sorted(groups.items())


def _hide_paths() -> list[str]:
    """Credential paths under the caller's home (looked up per run: HOME may change)."""
    needed = _interpreter_dirs()
    home = os.path.expanduser("~")
    candidates = [os.path.join(home, p) for p in _HIDE_IN_HOME] if home not in ("", "/") else []
    if os.geteuid() != 0 and os.environ.get("XDG_RUNTIME_DIR"):  # session bus, agent sockets
        candidates.append(os.environ["XDG_RUNTIME_DIR"])
    out = []
    for c in candidates:
        real = os.path.realpath(c)
        if os.path.exists(real) and not any(n == real or n.startswith(real + "/") for n in needed):
            out.append(real)
    return out


_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}
_PROBE_CODE = "import json, math\nprint(json.dumps(math.sqrt(16.0)))\n"


def _probe(mode: str) -> str | None:
    """``None`` if ``mode`` works here, else why not (probed once per process)."""
    with _probe_lock:
        if mode not in _probed:
            try:
                _probed[mode] = _probe_once(mode)
            except (SandboxError, OSError) as e:
                _probed[mode] = str(e)
        return _probed[mode]


def _probe_once(mode: str) -> str | None:
    res, _ = _execute({"kind": "program", "code": _PROBE_CODE}, "", Limits(timeout_s=30), mode)
    if res.ok and res.stdout == "4.0\n":
        return None
    why = (res.stderr.strip().splitlines()[-1:] or [res.detail])[0]
    if mode == "basic" and _plan(mode).root:
        why += f" (as root, programs run as a uid of their own that must be able to read {sys.base_prefix})"
    return f"probe {res.status}: {why}"


def _select_mode(isolation: str) -> str:
    if sys.platform != "linux":
        raise SandboxError(f"the sandbox needs Linux, not {sys.platform}")
    modes = ("namespaces", "basic") if isolation == "auto" else (isolation,)
    reasons = []
    for mode in modes:
        why = _probe(mode)
        if why is None:
            return mode
        reasons.append(f"{mode}: {why}")
    raise SandboxError(f"no usable sandbox isolation ({'; '.join(reasons)})")


@functools.cache
def _uid_range() -> tuple[int, int]:
    """Per-run uids for root: a block far above real users, or a small one in small user namespaces."""
    spans = []
    for line in Path("/proc/self/uid_map").read_text().splitlines():
        inside, _, count = (int(x) for x in line.split())
        spans.append((inside, inside + count))
    for base, size in ((1_600_000_000, 1 << 24), (50_000, 10_000)):
        if any(lo <= base and base + size <= hi for lo, hi in spans):
            return base, size
    raise SandboxError("no free uid range in /proc/self/uid_map for per-run sandbox users")


# --- one execution -----------------------------------------------------------------------------


@functools.cache
def _child_source() -> str:
    """The child part of this file (between the markers), run as ``python -I -S -c``."""
    try:
        text = Path(__file__).read_text(encoding="utf-8")
    except OSError as e:
        raise SandboxError(f"cannot read the sandbox child code from {__file__}: {e}") from None
    start = text.index("\n# >>> sandbox child\n")
    end = text.index("\n# <<< sandbox child\n")
    return text[start:end] + "\n_child_main()\n"


def _execute(
    job: dict, stdin: str, limits: Limits, mode: str, nonce: str | None = None
) -> tuple[ExecResult, bytes]:
    """Run one job in a fresh process tree; the result and the raw unit-test lines."""
    plan = _plan(mode)
    uid = _uid_range()[0] + secrets.randbelow(_uid_range()[1]) if plan.root else None
    # Nameless files (O_TMPFILE): the program cannot reach them by path, only through the fds
    # it is given (stdin, stdout, stderr and, for unit tests, the results).
    with contextlib.ExitStack() as stack:

        def new_file(data: bytes = b"") -> int:
            f = stack.enter_context(tempfile.TemporaryFile(buffering=0))
            f.write(data)
            f.seek(0)
            return f.fileno()

        job_fd, stdin_fd = new_file(marshal.dumps(job)), new_file(stdin.encode("utf-8", "surrogatepass"))
        out_fd, err_fd, status_fd, results_fd = (new_file() for _ in range(4))
        # The program gets the results file write-only and may not reopen it for reading (mode
        # 0200, no capabilities): earlier verdicts would tell it the nonce.
        os.fchmod(results_fd, 0o200)
        results_w = os.open(f"/proc/self/fd/{results_fd}", os.O_WRONLY | os.O_APPEND)
        stack.callback(os.close, results_w)
        if plan.namespaces:
            workdir = _NS_WORKDIR
        else:
            host = tempfile.mkdtemp(prefix="r1rl-sandbox-")
            stack.callback(shutil.rmtree, host, ignore_errors=True)
            workdir = os.path.join(host, "work")
            os.mkdir(workdir, 0o700)
            if uid is not None:
                os.chmod(host, 0o711)
                os.chown(workdir, uid, uid)
        cfg = {
            "namespaces": plan.namespaces,
            "userns": plan.userns,
            "uid": uid,
            "workdir": workdir,
            "job_fd": job_fd,
            "status_fd": status_fd,
            "results_fd": results_w,
            "nonce": nonce,
            "reveal": plan.reveal,
            "hide": _hide_paths() if plan.namespaces else [],
            "tmp_mb": limits.tmp_mb,
            "seccomp": plan.seccomp,
            "allow_unix": plan.namespaces,
            "nproc_relative": not plan.namespaces and not plan.root,
            "nproc_extra": 2 if plan.userns else 0,
            "limits": {f.name: getattr(limits, f.name) for f in fields(limits)},
        }
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}
        timed_out, wall, returncode = _spawn(cfg, env, (stdin_fd, out_fd, err_fd), limits, plan)
        if plan.root and not plan.namespaces:
            _sweep_uid(uid)
        status = os.pread(status_fd, 1 << 16, 0).decode("utf-8", "replace")
        out, err = (os.pread(fd, limits.max_output_bytes + 1, 0) for fd in (out_fd, err_fd))
        result = _classify(status, timed_out, returncode, wall, limits, out, err)
        return result, os.pread(results_fd, _MAX_RESULTS_BYTES, 0) if nonce else b""


def _spawn(
    cfg: dict, env: dict, stdio: tuple[int, int, int], limits: Limits, plan: _Plan
) -> tuple[bool, float, int]:
    """Start the supervisor, enforce the wall clock, kill the whole tree; (timed out, wall, rc)."""
    # the real interpreter, not a venv's symlink: the venv may live under a path the sandbox hides
    # (its private /tmp), and with -I -S the venv adds nothing anyway
    argv = [_real_python(), "-I", "-S", "-c", _child_source(), "", f"{_TAG}:{os.getpid()}"]
    r, w = os.pipe()
    try:
        with open(w, "wb", closefd=False) as f:  # a few hundred bytes: fits in the pipe buffer
            f.write(marshal.dumps(cfg))
        argv[5] = str(r)
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            env=env,
            cwd="/",
            pass_fds=(r, cfg["job_fd"], cfg["status_fd"], cfg["results_fd"]),
            start_new_session=True,
        )
    finally:
        os.close(r)
        os.close(w)
    exited, init_fd = False, None
    try:
        exited = _wait_exited(proc.pid, limits.timeout_s)
        wall = time.monotonic() - start
        if not exited and plan.namespaces:
            init_fd = _pidfd_of_init(cfg["status_fd"])
    finally:  # also when interrupted: never leave a sandbox running
        # Always, even after a clean exit: the supervisor is a zombie until reaped, so its process
        # group id cannot have been reused yet.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if init_fd is not None:  # PID 1 of the sandbox: killing it kills the whole namespace
            try:
                signal.pidfd_send_signal(init_fd, signal.SIGKILL)
                _readable(init_fd, 10.0)  # once init has exited, its namespace is torn down
            except OSError:
                pass
            os.close(init_fd)
        returncode = proc.wait()
        if not plan.namespaces:
            _kill_group(proc.pid)
    return not exited, wall, returncode


def _wait_exited(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` (our child) exits, without reaping it; False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        try:
            return _readable(fd, timeout)
        finally:
            os.close(fd)
    end = time.monotonic() + timeout
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= end:
            return False
        time.sleep(0.005)
    return True


def _readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def _pidfd_of_init(status_fd: int) -> int | None:
    for line in os.pread(status_fd, 1 << 16, 0).decode("utf-8", "replace").splitlines():
        if line.startswith("init "):
            try:
                return os.pidfd_open(int(line.split()[1]))
            except (AttributeError, OSError, ValueError):
                return None
    return None


def _kill_group(pgid: int) -> None:
    """Basic mode: SIGKILL the supervisor's process group until no member is left, not even dying.

    The group id cannot be reused meanwhile: Linux keeps a pid reserved while a group uses it.
    """
    for _ in range(400):
        if not any(_stat_fields(p)[2:3] == [str(pgid)] for p in _pids()):
            return
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        time.sleep(0.005)


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _sweep_uid(uid: int | None) -> None:
    """Basic mode as root: kill what is left running under the run's uid, remove its temp files."""
    for _ in range(50):
        pids = [p for p in _pids() if _uid_of(p) == uid]
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.stat(follow_symlinks=False).st_uid == uid:
                    shutil.rmtree(e.path) if e.is_dir(follow_symlinks=False) else os.unlink(e.path)
            except OSError:
                pass


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _classify(
    status: str, timed_out: bool, returncode: int, wall: float, limits: Limits, out: bytes, err: bytes
) -> ExecResult:
    final, cpu = None, None
    for line in status.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "setup":
            raise SandboxError(f"sandbox setup failed: {rest}")
        if kind in ("exit", "signal"):
            number, cpu_text = rest.split()
            final, cpu = (kind, int(number)), float(cpu_text)
    cap = limits.max_output_bytes
    common = {
        "stdout": out[:cap].decode("utf-8", "replace"),
        "stderr": err[:cap].decode("utf-8", "replace"),
        "wall_s": wall,
        "cpu_s": cpu,
        "truncated": len(out) > cap or len(err) > cap,
    }
    if timed_out:
        return ExecResult("timeout", None, detail=f"wall-clock limit of {limits.timeout_s:g} s", **common)
    if final is None:
        detail = f"the sandbox's init was killed (supervisor exit status {returncode})"
        return ExecResult("killed", returncode, detail=detail, **common)
    kind, number = final
    if kind == "exit":
        return ExecResult("ok" if number == 0 else "error", number, detail=f"exit code {number}", **common)
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    if number == signal.SIGXCPU or (number == signal.SIGKILL and (cpu or 0) >= math.ceil(limits.cpu_s)):
        return ExecResult(
            "timeout", -number, detail=f"CPU-time limit of {limits.cpu_s:g} s ({name})", **common
        )
    if number == signal.SIGXFSZ:
        detail = f"file-size limit of {limits.max_file_mb} MB ({name})"
    else:
        detail = f"killed by {name}"
    return ExecResult("killed", -number, detail=detail, **common)


# >>> sandbox child
# Everything between these markers also runs inside the sandbox, as ``python -I -S -c <text>``:
# it may use only the standard library and the names defined between the markers.

_C_CLONE_NEWNS, _C_CLONE_NEWIPC, _C_CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
_C_CLONE_NEWPID, _C_CLONE_NEWNET, _C_CLONE_NS_MASK = 0x20000000, 0x40000000, 0x7E020000
_C_MS_RDONLY, _C_MS_NOSUID, _C_MS_NODEV, _C_MS_NOEXEC = 1, 2, 4, 8
_C_MS_REMOUNT, _C_MS_BIND, _C_MS_REC, _C_MS_PRIVATE = 32, 4096, 16384, 1 << 18
_C_PR_SET_PDEATHSIG, _C_PR_SET_DUMPABLE, _C_PR_SET_SECCOMP = 1, 4, 22
_C_PR_SET_CHILD_SUBREAPER, _C_PR_SET_NO_NEW_PRIVS = 36, 38
_C_SETUP_EXIT = 121


def _child_main() -> None:
    """Supervisor: read the config, enter the namespaces, fork *init*, wait for it."""
    import marshal  # not json: importing json (and re) would cost each run ~15 ms
    import os
    import sys

    sys.dont_write_bytecode = True
    os.umask(0o022)
    cfg_fd = int(sys.argv[1])
    raw = b""
    while chunk := os.read(cfg_fd, 1 << 16):
        raw += chunk
    os.close(cfg_fd)
    cfg = marshal.loads(raw)
    try:
        libc = _child_libc()
        with open(cfg["job_fd"], "rb") as f:
            job = marshal.load(f)
        if cfg["namespaces"]:
            _child_unshare(libc, cfg["userns"])
        _child_prctl(libc, _C_PR_SET_DUMPABLE, 0)  # the program may not open our fds via /proc
        init = os.fork()
    except BaseException as e:
        _child_fail(cfg, "supervisor", e)
    if init == 0:
        _child_init(cfg, libc, job)
    os.write(cfg["status_fd"], f"init {init}\n".encode())
    _, st = os.waitpid(init, 0)
    os._exit(0 if os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0 else 1)


def _child_fail(cfg, where, e) -> None:
    import os

    msg = f"setup {where}: {type(e).__name__}: {e}".replace("\n", " ")[:2000]
    os.write(cfg["status_fd"], (msg + "\n").encode("utf-8", "replace"))
    os._exit(_C_SETUP_EXIT)


def _child_libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _child_call(result, what) -> None:
    import ctypes
    import os

    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _child_prctl(libc, option, arg) -> None:
    import ctypes

    ul = ctypes.c_ulong  # prctl is variadic: pass full-width arguments
    _child_call(libc.prctl(option, ul(arg), ul(0), ul(0), ul(0)), f"prctl({option})")


def _child_unshare(libc, userns) -> None:
    import os

    uid, gid = os.getuid(), os.getgid()
    flags = _C_CLONE_NEWNS | _C_CLONE_NEWPID | _C_CLONE_NEWNET | _C_CLONE_NEWIPC
    _child_call(libc.unshare(flags | (_C_CLONE_NEWUSER if userns else 0)), "unshare")
    if userns:  # map only ourselves; no setgroups, so no way to drop groups and gain access
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


def _child_init(cfg, libc, job) -> None:
    """*init*: PID 1 of the namespace (or a subreaper); forks the worker and reports its status."""
    import os
    import signal

    try:
        _child_prctl(libc, _C_PR_SET_PDEATHSIG, signal.SIGKILL)
        if cfg["namespaces"]:
            os.setsid()  # out of the supervisor's group: the program cannot signal it with kill(0)
            _child_mounts(cfg, libc)
        else:
            _child_prctl(libc, _C_PR_SET_CHILD_SUBREAPER, 1)
        os.makedirs(cfg["workdir"], mode=0o700, exist_ok=True)
        if cfg["uid"] is not None:
            os.chown(cfg["workdir"], cfg["uid"], cfg["uid"])
        worker = os.fork()
    except BaseException as e:
        _child_fail(cfg, "init", e)
    if worker == 0:
        _child_worker(cfg, libc, job)
    while True:
        pid, st, usage = os.wait4(-1, 0)
        if pid == worker:
            break
    if not cfg["namespaces"]:
        _child_kill_descendants()
    cpu = usage.ru_utime + usage.ru_stime
    line = f"signal {os.WTERMSIG(st)}" if os.WIFSIGNALED(st) else f"exit {os.WEXITSTATUS(st)}"
    os.write(cfg["status_fd"], f"{line} {cpu:.3f}\n".encode())
    os._exit(0)  # in a PID namespace the kernel now kills everything left in it


def _child_mounts(cfg, libc) -> None:
    """Private, read-only view of the host; fresh /tmp, /dev/shm, /proc; credentials covered."""
    import ctypes
    import os

    def mount(src, target, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()
        rc = libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
        _child_call(rc, f"mount {target}")

    mount(None, "/", None, _C_MS_REC | _C_MS_PRIVATE)  # nothing below may propagate to the host
    for path in cfg["hide"]:
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", _C_MS_RDONLY | _C_MS_NOSUID | _C_MS_NODEV, "size=16k,mode=0755")
        else:
            mount("/dev/null", path, None, _C_MS_BIND)
    for block, paths in cfg["reveal"]:  # e.g. /root: an empty tmpfs that shows only the interpreter
        fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in paths]
        mount("tmpfs", block, "tmpfs", _C_MS_NOSUID | _C_MS_NODEV, "size=1m,mode=0755")
        for p, fd in zip(paths, fds):
            os.makedirs(p, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", p, None, _C_MS_BIND | _C_MS_REC)
            os.close(fd)
    _child_readonly(mount)
    for path in ("/tmp", "/dev/shm"):
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", _C_MS_NOSUID | _C_MS_NODEV, f"size={cfg['tmp_mb']}m,mode=1777")
    mount("proc", "/proc", "proc", _C_MS_NOSUID | _C_MS_NODEV | _C_MS_NOEXEC)


def _child_readonly(mount) -> None:
    """Re-mount every mount read-only, one by one (lower, covered mounts are out of reach anyway)."""
    import os

    with open("/proc/self/mountinfo") as f:
        points = [_child_unescape(line.split()[4]) for line in f]
    for mp in points:
        try:  # MS_BIND: change this mount only, never the (shared) filesystem
            flags = _C_MS_REMOUNT | _C_MS_BIND | _C_MS_RDONLY | _child_mount_flags(os.statvfs(mp).f_flag)
            mount(None, mp, None, flags)
        except OSError:
            if mp == "/":
                raise


def _child_unescape(field) -> str:
    """Undo the octal escapes (``\\040`` ...) of /proc/self/mountinfo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _child_mount_flags(st_flags) -> int:
    """Keep a mount's nosuid/nodev/noexec/atime flags (a user namespace may not clear them)."""
    flags = 0
    for st, ms in ((2, 2), (4, 4), (8, 8), (1024, 1024), (2048, 2048), (4096, 1 << 21)):
        if st_flags & st:
            flags |= ms
    return flags


def _child_kill_descendants() -> None:
    """Basic mode: SIGKILL every process below us (orphans were re-parented to us) until none."""
    import os
    import signal

    me = os.getpid()
    for _ in range(200):
        parent = {}
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    with open(f"/proc/{p}/stat") as f:
                        parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    pass
        below, frontier = set(), {me}
        while frontier:
            frontier = {p for p, pp in parent.items() if pp in frontier and p not in below}
            below |= frontier
        if not below:
            return
        for p in below:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


def _child_worker(cfg, libc, job) -> None:
    """Worker: limits, uid, no privileges, seccomp, close fds, then run the job (never returns)."""
    import os

    keep = {0, 1, 2} | ({cfg["results_fd"]} if job["kind"] == "tests" else set())
    try:
        os.chdir(cfg["workdir"])
        _child_limits(cfg)
        uid = cfg["uid"]
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        _child_prctl(libc, _C_PR_SET_NO_NEW_PRIVS, 1)
        _child_drop_caps(libc)
        if cfg["seccomp"]:
            _child_seccomp(libc, cfg["seccomp"], cfg["allow_unix"])
        else:
            _child_block_sockets()
        _child_prctl(libc, _C_PR_SET_DUMPABLE, 1)
        for fd in [int(x) for x in os.listdir("/proc/self/fd")]:
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
    except BaseException as e:
        _child_fail(cfg, "worker", e)
    if job["kind"] == "tests":
        _child_run_tests(job, cfg["nonce"], cfg["results_fd"])
    _child_run_program(job["code"])


def _child_limits(cfg) -> None:
    import math
    import os
    import resource

    lim = cfg["limits"]

    def setlimit(kind, soft, hard=None):
        hard = soft if hard is None else hard
        cur_hard = resource.getrlimit(kind)[1]
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
        resource.setrlimit(kind, (min(soft, hard), hard))

    cpu = math.ceil(lim["cpu_s"])
    setlimit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the soft limit, SIGKILL at the hard one
    setlimit(resource.RLIMIT_AS, lim["memory_mb"] << 20)
    setlimit(resource.RLIMIT_FSIZE, lim["max_file_mb"] << 20)
    setlimit(resource.RLIMIT_NOFILE, lim["max_open_files"])
    setlimit(resource.RLIMIT_CORE, 0)
    # RLIMIT_NPROC counts all tasks of the uid: as root the run has a uid of its own; in a user
    # namespace the count is per namespace (plus supervisor and init); otherwise add what the
    # user already runs, but for this worker, which is the program's first task.
    nproc = lim["max_processes"] + cfg["nproc_extra"]
    if cfg["nproc_relative"]:
        nproc += _child_count_tasks(os.getuid()) - 1
    setlimit(resource.RLIMIT_NPROC, nproc)


def _child_count_tasks(uid) -> int:
    import os

    n = 0
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{p}/status") as f:
                info = dict(line.split(":", 1) for line in f if ":" in line)
            if int(info["Uid"].split()[0]) == uid:
                n += int(info["Threads"])
        except (OSError, ValueError, KeyError):
            pass
    return n


def _child_drop_caps(libc) -> None:
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    _child_call(libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")


def _child_seccomp(libc, spec, allow_unix) -> None:
    """Install the BPF filter described in the module docstring."""
    import ctypes
    import struct

    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38
    prog = []

    def op(code, k, jt=0, jf=0):
        prog.append(struct.pack("HBBI", code, jt, jf, k))

    op(ld, 4)  # seccomp_data.arch
    op(jeq, spec["arch"], jt=1)
    op(ret, eperm)  # a foreign system-call ABI
    op(ld, 0)  # seccomp_data.nr
    if spec["x32"]:
        op(jge, 0x40000000, jf=1)
        op(ret, eperm)
    for nr in spec["deny"]:
        op(jeq, nr, jf=1)
        op(ret, eperm)
    op(jeq, spec["clone3"], jf=1)
    op(ret, enosys)  # its flags are out of reach: libc falls back to clone
    if allow_unix:
        op(jeq, spec["socket"], jf=4)
        op(ld, 16)  # args[0]: the address family
        op(jeq, 1, jt=1)  # AF_UNIX
        op(ret, eperm)
        op(ret, allow)
    else:
        op(jeq, spec["socket"], jf=1)
        op(ret, eperm)
    op(jeq, spec["clone"], jf=3)
    op(ld, 16)  # args[0]: clone flags
    op(jset, _C_CLONE_NS_MASK, jf=1)
    op(ret, eperm)
    op(ret, allow)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(b"".join(prog))
    fprog = Prog(len(prog), ctypes.addressof(buf))
    ul = ctypes.c_ulong
    _child_call(libc.prctl(_C_PR_SET_SECCOMP, ul(2), ul(ctypes.addressof(fprog)), ul(0), ul(0)), "seccomp")


def _child_block_sockets() -> None:
    """Without seccomp: a best-effort Python prelude that refuses new non-AF_UNIX sockets.

    ``socket.socket.__init__`` delegates to ``_socket.socket.__init__`` looked up at call time, so
    replacing ``_socket.socket`` guards both; ``ctypes`` or a subprocess can still get around it.
    """
    import _socket
    import socket  # noqa: F401  (built on the real type before the swap)

    c_socket = _socket.socket

    class GuardedSocket(c_socket):
        __slots__ = ()

        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None and family != _socket.AF_UNIX:
                raise PermissionError(1, "network access is disabled in this sandbox")
            c_socket.__init__(self, family, type, proto, fileno)

    _socket.socket = _socket.SocketType = GuardedSocket


def _child_exit_builtins() -> None:
    import _sitebuiltins
    import builtins

    # ``-S`` skips site.py, which is what defines exit() and quit().
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


def _child_main_module():
    import builtins
    import sys
    import types

    main = types.ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = ["<solution>"]
    return main.__dict__


def _child_print_exception(e, code) -> None:
    import linecache
    import sys
    import traceback

    linecache.cache["<solution>"] = (len(code), None, code.splitlines(True), "<solution>")
    tb = e.__traceback__.tb_next if e.__traceback__ else None  # drop our own exec() frame
    traceback.print_exception(type(e), e, tb)
    sys.stderr.flush()


def _child_run_program(code) -> None:
    import sys

    _child_exit_builtins()
    ns = _child_main_module()
    try:
        exec(compile(code, "<solution>", "exec"), ns)
    except SystemExit:
        raise
    except BaseException as e:
        _child_print_exception(e, code)
        sys.exit(1)
    sys.exit(0)  # a normal interpreter exit: joins threads, runs atexit, flushes


def _child_run_tests(job, nonce, results_fd) -> None:
    """Run the solution, then each test statement; one ``<nonce> i P|F`` line per assert outcome."""
    import builtins
    import os
    import sys
    import types

    _child_exit_builtins()
    # Bind, before the solution runs, everything the recorder relies on.
    write, function_type, code_type, type_, exec_ = os.write, types.FunctionType, types.CodeType, type, exec
    codes = [compile(src, "<tests>", "exec") for src in job["tests"]]
    expected, stack, mark = {}, list(codes), job["mark"]
    while stack:
        co = stack.pop()
        for k in co.co_consts:
            if isinstance(k, code_type):
                stack.append(k)
            elif co.co_name == "<lambda>" and isinstance(k, str) and k.startswith(mark):
                expected[int(k[len(mark) :])] = co
    helper, truth = _child_comparisons()
    reported = set()

    def check(idx, fn):
        try:
            ok = type_(fn) is function_type and fn.__code__ is expected.get(idx) and truth(fn(helper))
        except BaseException:
            ok = False
        if (idx, ok) not in reported:
            reported.add((idx, ok))
            write(results_fd, f"{nonce} {idx} {'P' if ok else 'F'}\n".encode())

    bdict, saved = builtins.__dict__, dict(builtins.__dict__)
    ns = _child_main_module()
    try:
        exec_(compile(job["code"], "<solution>", "exec"), ns)
    except BaseException as e:  # SystemExit too: leaving early must not skip (or pass) the tests
        try:
            _child_print_exception(e, job["code"])
        except BaseException:
            pass
    for co in codes:
        try:
            bdict.clear()
            bdict.update(saved)
            ns["__builtins__"] = builtins
            ns[job["check"]] = check
            exec_(co, ns)
        except BaseException:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(0)  # verdicts are written; threads or children the solution left do not matter


def _child_comparisons():
    """``helper.cmp`` and ``truth`` for the rewritten asserts, immune to always-equal objects.

    A comparison counts only between plain data (builtin scalars and containers, or subclasses
    that keep the builtin comparison methods, recursively) or between two values of one type.
    """
    import operator
    from collections import OrderedDict, defaultdict, deque

    atoms = (type(None), bool, int, float, complex, str, bytes)
    containers = (list, tuple, dict, set, frozenset, OrderedDict, defaultdict, deque)
    methods = (
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__contains__",
        "__bool__",
        "__len__",
    )
    ops = {
        "Eq": operator.eq,
        "NotEq": operator.ne,
        "Lt": operator.lt,
        "LtE": operator.le,
        "Gt": operator.gt,
        "GtE": operator.ge,
        "In": lambda a, b: a in b,
        "NotIn": lambda a, b: a not in b,
    }
    # Bound now: the program may patch builtins while a test runs (they are restored only between
    # test statements).
    all_, type_, bool_, getattr_, issubclass_, isinstance_ = all, type, bool, getattr, issubclass, isinstance
    dict_items, function_type = dict.items, type(lambda: None)

    def base_of(t):
        if t in atoms or t in containers:
            return t
        for b in atoms + containers:
            if issubclass_(t, b) and all_(getattr_(t, m, None) is getattr_(b, m, None) for m in methods):
                return b
        return None

    def plain(x, depth=0):
        b = base_of(type_(x))
        if b is None or depth > 20:
            return False
        if b in atoms:
            return True
        if issubclass_(b, dict):
            return all_(plain(k, depth + 1) and plain(v, depth + 1) for k, v in dict_items(x))
        return all_(plain(v, depth + 1) for v in b.__iter__(x))

    def truth(v):
        if type_(v) is bool_:
            return v
        if not plain(v):
            t = type_(v)
            if isinstance_(getattr_(t, "__bool__", None), function_type) or isinstance_(
                getattr_(t, "__len__", None), function_type
            ):
                return False  # truthiness defined by the program itself
        return bool_(v)

    def cmp(op, a, b):
        if type_(a) is not type_(b) and not (plain(a) and plain(b)):
            return False
        return truth(ops[op](a, b))

    class Helper:
        __slots__ = ()

    Helper.cmp = staticmethod(cmp)
    return Helper(), truth


# <<< sandbox child
