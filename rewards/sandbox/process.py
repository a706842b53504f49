"""Parent-side process control: start one sandboxed process tree, enforce its wall clock, kill it.

The parent never runs untrusted code. It compiles the child modules once, writes everything a
run needs into nameless files (``O_TMPFILE``: the program cannot reach them by path, only through
the descriptors it is given), starts ``python -I -S`` on a few-line boot script in a new session,
waits up to the wall clock, and then kills the whole tree (all of it: even after a clean exit),
reads back stdout, stderr (capped), the status lines of the sandbox's own processes and the
judge's verdict file, and classifies the outcome.
"""

from __future__ import annotations

import contextlib
import functools
import marshal
import math
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

Status = Literal["ok", "error", "timeout", "killed"]

TAG = "r1rl-sandbox"  # in every sandbox process's command line, to find strays
# The judge's own time (its start, the test code, decoding results), on top of Limits.timeout_s,
# which the program alone is charged: a program near its limit (MBPP 123 takes 3-6 s of a 5 s
# limit on a loaded machine) must not fail because the judge shared the clock.
JUDGE_ALLOWANCE_S = 1.0
MAX_VERDICT_BYTES = 1 << 20
_NS_DIRS = {"program": "/tmp/sandbox", "judge": "/tmp/judge"}  # inside the private /tmp
_CHILD_MODULES = ("channel", "program", "verdicts", "judge", "mounts", "child")  # in import order
_PACKAGE = "r1rl_sandbox"  # the child's name for them
# Run as ``python -I -S -c BOOT <fd> <tag>``: load the parent-compiled modules and start.
BOOT = f"""import marshal, os, sys, types
f = os.fdopen(int(sys.argv[1]), "rb")
modules, cfg, job = marshal.load(f), marshal.load(f), marshal.load(f)
f.close()
pkg = sys.modules["{_PACKAGE}"] = types.ModuleType("{_PACKAGE}")
pkg.__path__ = []
for name, code in modules:
    m = sys.modules["{_PACKAGE}." + name] = types.ModuleType("{_PACKAGE}." + name)
    m.__package__ = "{_PACKAGE}"
    setattr(pkg, name, m)
    exec(code, m.__dict__)
del f, modules, pkg, name, code, m
sys.modules["{_PACKAGE}.child"].main(cfg, job)
"""


class SandboxError(RuntimeError):
    """The sandbox itself could not be set up (not the program's fault)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one execution; defaults suit MBPP/HumanEval-sized programs.

    ``timeout_s`` is the program's wall clock (scoring unit tests: the time the judge spends
    waiting on the program; the judge's own work has :data:`JUDGE_ALLOWANCE_S` more);
    ``max_processes`` counts every task of the program (processes and threads, itself included);
    ``tmp_mb`` is the size of the private ``/tmp`` (and ``/dev/shm``) in namespaces mode;
    ``max_result_bytes`` caps one value the program sends the judge (encoded).
    """

    timeout_s: float = 10.0
    cpu_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 16
    max_file_mb: int = 16
    max_open_files: int = 64
    max_output_bytes: int = 64 * 1024
    tmp_mb: int = 64
    max_result_bytes: int = 1 << 20

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
    ``Limits.max_output_bytes``. Scoring unit tests, these describe the program's process: its
    exit code is the one its own run (before the tests called it) ended with, and an exit while
    the tests were running is an ``error`` whatever its code.
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


@functools.cache
def _child_modules() -> bytes:
    """The child modules, compiled once per process and marshalled for the boot script."""
    here = Path(__file__).parent
    compiled = []
    for name in _CHILD_MODULES:
        path = here / f"{name}.py"
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as e:
            raise SandboxError(f"cannot read the sandbox child code {path}: {e}") from None
        compiled.append((name, compile(source, str(path), "exec", dont_inherit=True)))
    return marshal.dumps(compiled)


@dataclass(frozen=True)
class Run:
    """What one process tree left behind, before classification."""

    status: str  # the status lines of supervisor, init, init2 and judge
    timed_out: bool
    wall_s: float
    returncode: int
    stdout: bytes
    stderr: bytes
    verdicts: bytes


def execute(job: dict, stdin: str, limits: Limits, mode: str, judge: dict | None = None) -> Run:
    """Run one job (``{"kind": "program"|"tests", "code": ...}``) in a fresh process tree.

    ``judge``: for tests, what only the judge may see (the compiled tests, the nonce ...); it is
    written to a file whose descriptor only the judge keeps.
    """
    from . import modes

    plan = modes.plan(mode)
    uids = dict(zip(("program", "judge"), modes.run_uids(plan)))
    with contextlib.ExitStack() as stack:

        def new_file(data: bytes = b"") -> int:
            f = stack.enter_context(tempfile.TemporaryFile(buffering=0))
            f.write(data)
            f.seek(0)
            return f.fileno()

        roles = _roles(limits, plan, uids, judge is not None, stack)
        status_fd = new_file()
        cfg = {
            "namespaces": plan.namespaces,
            "userns": plan.userns,
            "roles": roles,
            "status_fd": status_fd,
            "view": plan.view,
            "tmp_mb": limits.tmp_mb,
            "seccomp": plan.seccomp,
            "allow_unix": plan.namespaces,
            "nproc_relative": not plan.namespaces and not plan.root,
            "nproc_extra": (4 if judge else 2) if plan.userns else 0,
            "max_result_bytes": limits.max_result_bytes,
        }
        fds = [status_fd]
        verdict_fd = None
        if judge is not None:
            tests_fd = new_file(marshal.dumps(judge))
            verdict_fd = new_file()
            # The judge gets the verdict file write-only; nobody in the sandbox may read it back.
            os.fchmod(verdict_fd, 0o200)
            judge_fd = os.open(f"/proc/self/fd/{verdict_fd}", os.O_WRONLY | os.O_APPEND)
            stack.callback(os.close, judge_fd)
            cfg["tests_fd"], cfg["verdict_fd"] = tests_fd, judge_fd
            fds += [tests_fd, judge_fd]
        boot_fd = new_file(_child_modules() + marshal.dumps(cfg) + marshal.dumps(job))
        stdio = (new_file(stdin.encode("utf-8", "surrogatepass")), new_file(), new_file())
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": roles["program"]["dir"],
            "TMPDIR": roles["program"]["dir"],
            "LANG": "C.UTF-8",
        }
        wall_clock = limits.timeout_s + (JUDGE_ALLOWANCE_S if judge is not None else 0.0)
        timed_out, wall, rc = _spawn(boot_fd, fds, stdio, env, wall_clock, plan.namespaces, status_fd)
        if plan.root and not plan.namespaces:
            for uid in uids.values():
                _sweep_uid(uid)
        out, err = (os.pread(fd, limits.max_output_bytes + 1, 0) for fd in stdio[1:])
        return Run(
            status=os.pread(status_fd, 1 << 16, 0).decode("utf-8", "replace"),
            timed_out=timed_out,
            wall_s=wall,
            returncode=rc,
            stdout=out,
            stderr=err,
            verdicts=os.pread(verdict_fd, MAX_VERDICT_BYTES, 0) if verdict_fd is not None else b"",
        )


def _roles(limits: Limits, plan, uids: dict, tests: bool, stack: contextlib.ExitStack) -> dict:
    """Directory, uid, limits and dumpable flag of the program's process and of the judge's."""
    names = ("program", "judge") if tests else ("program",)
    if plan.namespaces:
        dirs = {r: _NS_DIRS[r] for r in names}
    else:
        host = tempfile.mkdtemp(prefix="r1rl-sandbox-")
        stack.callback(shutil.rmtree, host, ignore_errors=True)
        if plan.root:
            os.chmod(host, 0o711)  # the per-run uids traverse it; only their own dir is theirs
        dirs = {r: os.path.join(host, r) for r in names}
    program = {f.name: getattr(limits, f.name) for f in fields(limits)}
    # The judge's CPU limit never binds before its wall clock does.
    judge = {**program, "cpu_s": limits.timeout_s + JUDGE_ALLOWANCE_S + 1}
    return {
        r: {
            "dir": dirs[r],
            "uid": uids[r],
            "limits": program if r == "program" else judge,
            "dumpable": int(r == "program"),
        }
        for r in names
    }


def _spawn(
    boot_fd: int, fds: list[int], stdio: tuple, env: dict, wall_clock: float, namespaces: bool, status_fd: int
) -> tuple[bool, float, int]:
    """Start the supervisor, enforce the wall clock, kill the whole tree; (timed out, wall, rc)."""
    from . import modes

    # the real interpreter, not a venv's symlink: the sandbox shows the interpreter's installation
    # only (modes.view), and with -I -S the venv adds nothing anyway
    argv = [modes.real_python(), "-I", "-S", "-c", BOOT, str(boot_fd), f"{TAG}:{os.getpid()}"]
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=stdio[0],
        stdout=stdio[1],
        stderr=stdio[2],
        env=env,
        cwd="/",
        pass_fds=(boot_fd, *fds),
        start_new_session=True,
    )
    exited, init_fd = False, None
    try:
        exited = _wait_exited(proc.pid, wall_clock)
        wall = time.monotonic() - start
        if not exited and namespaces:
            init_fd = _pidfd_of_init(status_fd)
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
        if not namespaces:
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


# --- classification -------------------------------------------------------------------------------


def _status_lines(run: Run) -> dict[str, tuple[str, int, float]]:
    """``{role: (exit|signal, number, cpu seconds)}``; a setup failure raises :class:`SandboxError`."""
    out = {}
    for line in run.status.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "setup":
            raise SandboxError(f"sandbox setup failed: {rest}")
        parts = rest.split()
        if kind in ("worker", "judge") and len(parts) == 3 and parts[0] in ("exit", "signal"):
            out[kind] = (parts[0], int(parts[1]), float(parts[2]))
    return out


def _common(run: Run, limits: Limits, cpu: float | None) -> dict:
    cap = limits.max_output_bytes
    return {
        "stdout": run.stdout[:cap].decode("utf-8", "replace"),
        "stderr": run.stderr[:cap].decode("utf-8", "replace"),
        "wall_s": run.wall_s,
        "cpu_s": cpu,
        "truncated": len(run.stdout) > cap or len(run.stderr) > cap,
    }


def classify_program(run: Run, limits: Limits) -> ExecResult:
    """The outcome of a program run: its exit, its signal, or the wall clock."""
    worker = _status_lines(run).get("worker")
    common = _common(run, limits, worker[2] if worker else None)
    if run.timed_out:
        return ExecResult("timeout", None, detail=f"wall-clock limit of {limits.timeout_s:g} s", **common)
    if worker is None:
        detail = f"the sandbox's init was killed (supervisor exit status {run.returncode})"
        return ExecResult("killed", run.returncode, detail=detail, **common)
    return _by_end(worker, limits, common, "")


def _by_end(worker: tuple, limits: Limits, common: dict, exited: str) -> ExecResult:
    kind, number, cpu = worker
    if kind == "exit":
        if exited:
            return ExecResult("error", number, detail=f"{exited} (exit code {number})", **common)
        return ExecResult("ok" if number == 0 else "error", number, detail=f"exit code {number}", **common)
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu >= math.ceil(limits.cpu_s)):
        return ExecResult(
            "timeout", -number, detail=f"CPU-time limit of {limits.cpu_s:g} s ({name})", **common
        )
    if number == signal.SIGXFSZ:
        detail = f"file-size limit of {limits.max_file_mb} MB ({name})"
    else:
        detail = f"killed by {name}"
    return ExecResult("killed", -number, detail=detail, **common)


def classify_tests(run: Run, limits: Limits, gone: str | None, ended: bool) -> ExecResult:
    """The outcome of the program's process while the judge ran the tests.

    ``gone``: why the judge stopped waiting on the program (``timeout``, ``died``, ``protocol
    ...``), ``None`` if it never had to; ``ended``: the judge reached its end.
    """
    lines = _status_lines(run)
    worker = lines.get("worker")
    common = _common(run, limits, worker[2] if worker else None)
    if gone == "timeout":
        detail = f"wall-clock limit of {limits.timeout_s:g} s (the program's time answering the tests)"
        return ExecResult("timeout", None, detail=detail, **common)
    if gone is not None and gone.startswith("protocol"):
        detail = f"the program broke the judge's protocol ({gone.removeprefix('protocol:').strip()})"
        return ExecResult("error", worker[1] if worker else None, detail=detail, **common)
    if gone == "died":
        if worker is None:
            return ExecResult("killed", None, detail="the program's process vanished", **common)
        return _by_end(worker, limits, common, "the program exited before the tests were done")
    if run.timed_out:
        detail = f"the tests ran past the judge's {limits.timeout_s + JUDGE_ALLOWANCE_S:g} s"
        return ExecResult("timeout", None, detail=detail, **common)
    if not ended:
        judge = lines.get("judge")
        why = f"{judge[0]} {judge[1]}" if judge else f"supervisor exit status {run.returncode}"
        return ExecResult("killed", None, detail=f"the judge ended early ({why})", **common)
    if worker is None:
        return ExecResult("ok", None, detail="the program did not exit when the tests were done", **common)
    return _by_end(worker, limits, common, "")
