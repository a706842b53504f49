"""The sandbox's own processes: supervisor, *init*, and the setup of each process that runs code.

Child code: this module (with :mod:`.channel`, :mod:`.program`, :mod:`.verdicts`, :mod:`.judge`
and :mod:`.mounts`) runs inside the sandbox, in ``python -I -S``, so it imports only the standard
library and its siblings. The parent compiles the six modules once and hands the code objects over (see
:mod:`.process`), so a run pays no compilation. The trees, per kind of job::

    program:  supervisor ── init ── worker (runs the program)
    tests:    supervisor ── init ─┬─ judge (runs the tests; :mod:`.judge`)
                                  └─ init2 ── worker (runs the solution; :mod:`.program`)

The supervisor enters the new namespaces (``namespaces`` mode) and forks *init*, PID 1 of the
new PID namespace. For tests, *init* forks the judge, then enters a second PID namespace of
which *init2* is PID 1, so that the solution's process cannot address the judge, *init* or
anything outside; *init2* mounts a ``/proc`` of its own namespace. In ``basic`` mode *init* is a
child subreaper and forks the judge and the worker itself.

Each process that runs code first applies, in this order: its working directory, ``resource``
limits, a uid of its own (as root: one per role, so the solution's uid differs from the
judge's), ``PR_SET_NO_NEW_PRIVS``, no capabilities, the seccomp filter (or the socket prelude),
its dumpable flag (the judge is not dumpable: no one may read its memory or open its files
through ``/proc``) and the closing of every file descriptor it does not need.
"""

from __future__ import annotations

import ctypes
import math
import os
import resource
import struct
import sys
import time

from .mounts import MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, build_root, call, mounter

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET, CLONE_NS_MASK = 0x20000000, 0x40000000, 0x7E020000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP = 1, 4, 22
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 36, 38
SETUP_EXIT = 121
SIGKILL = 9
# After the judge is done, how long the solution's process may take to exit when told to.
QUIT_GRACE_S = 0.5


def main(cfg: dict, job: dict) -> None:
    """Supervisor: enter the namespaces, fork *init*, wait for it (never returns)."""
    sys.dont_write_bytecode = True
    os.umask(0o022)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if cfg["namespaces"]:
            _unshare(libc, cfg["userns"])
        prctl(libc, PR_SET_DUMPABLE, 0)  # the program may not open our fds via /proc
        init = os.fork()
    except BaseException as e:
        fail(cfg, "supervisor", e)
    if init == 0:
        _init(cfg, libc, job)
    for key in ("tests_fd", "verdict_fd"):  # only the judge needs them
        if key in cfg:
            os.close(cfg[key])
    os.write(cfg["status_fd"], f"init {init}\n".encode())
    _, st = os.waitpid(init, 0)
    os._exit(0 if os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0 else 1)


def fail(cfg: dict, where: str, e: BaseException) -> None:
    msg = f"setup {where}: {type(e).__name__}: {e}".replace("\n", " ")[:2000]
    os.write(cfg["status_fd"], (msg + "\n").encode("utf-8", "replace"))
    os._exit(SETUP_EXIT)


def prctl(libc, option: int, arg: int) -> None:
    ul = ctypes.c_ulong  # prctl is variadic: pass full-width arguments
    call(libc.prctl(option, ul(arg), ul(0), ul(0), ul(0)), f"prctl({option})")


def _unshare(libc, userns: bool) -> None:
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC
    call(libc.unshare(flags | (CLONE_NEWUSER if userns else 0)), "unshare")
    if userns:  # map only ourselves; no setgroups, so no way to drop groups and gain access
        for name, text in (
            ("setgroups", "deny"),
            ("uid_map", f"{uid} {uid} 1"),
            ("gid_map", f"{gid} {gid} 1"),
        ):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)


# --- init ---------------------------------------------------------------------------------------


def _init(cfg: dict, libc, job: dict) -> None:
    """*init*: PID 1 of the namespace (or a subreaper); starts the job's processes, reports them."""
    try:
        prctl(libc, PR_SET_PDEATHSIG, SIGKILL)
        if cfg["namespaces"]:
            os.setsid()  # out of the supervisor's group: the program cannot signal it with kill(0)
            build_root(cfg, libc)
        else:
            prctl(libc, PR_SET_CHILD_SUBREAPER, 1)
        for spec in cfg["roles"].values():
            os.makedirs(spec["dir"], mode=0o700, exist_ok=True)
            if spec["uid"] is not None:
                os.chown(spec["dir"], spec["uid"], spec["uid"])
        if job["kind"] == "program":
            worker = os.fork()
        else:
            judge, solution = _start_tests(cfg, libc, job)
    except BaseException as e:
        fail(cfg, "init", e)
    if job["kind"] == "program":
        if worker == 0:  # outside the try: the program's SystemExit ends the interpreter normally
            from . import program

            _setup(cfg, libc, "program", {0, 1, 2})
            program.run_program(job["code"])
        _report(cfg, "worker", *_wait_for(worker))
    else:
        _wait_tests(cfg, judge, solution)
    if not cfg["namespaces"]:
        _kill_descendants()
    os._exit(0)  # in a PID namespace the kernel now kills everything left in it


def _fork(body) -> int:
    """Fork a child that runs ``body()`` and exits with its status, whatever happens in it."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = body()
        finally:
            os._exit(status if type(status) is int else 1)
    return pid


def _start_tests(cfg: dict, libc, job: dict) -> tuple[int, int]:
    """Fork the judge, then the solution's side (in a PID namespace of its own where possible)."""
    req_r, req_w = os.pipe()  # judge -> solution
    rep_r, rep_w = os.pipe()  # solution -> judge
    judge = _fork(lambda: _judge(cfg, libc, req_w, rep_r))
    for fd in (cfg["tests_fd"], cfg["verdict_fd"], req_w, rep_r):
        os.close(fd)  # nothing of the tests is left in this process, nor in what it forks next
    if cfg["namespaces"]:
        call(libc.unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")
        solution = _fork(lambda: _init2(cfg, libc, job, req_r, rep_w))
    else:
        solution = _fork(lambda: _serve(cfg, libc, job, req_r, rep_w))
    os.close(req_r)
    os.close(rep_w)
    return judge, solution


def _judge(cfg: dict, libc, req_w: int, rep_r: int) -> int:
    import marshal

    from . import judge

    _setup(cfg, libc, "judge", {cfg["verdict_fd"], cfg["tests_fd"], req_w, rep_r}, null_stdio=True)
    with open(cfg["tests_fd"], "rb") as f:
        tests = marshal.load(f)
    return judge.run(tests, cfg["verdict_fd"], req_w, rep_r)


def _init2(cfg: dict, libc, job: dict, req_r: int, rep_w: int) -> int:
    """*init2*: PID 1 of the solution's PID namespace, with a /proc that shows only it, in a mount
    namespace of its own where the judge's directory is an empty tmpfs."""
    try:
        prctl(libc, PR_SET_PDEATHSIG, SIGKILL)
        os.setsid()  # kill(0) from the program reaches this group only, never the judge's
        call(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        mount = mounter(libc)
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        # the judge's working directory: an empty, read-only tmpfs from here on
        mount("tmpfs", cfg["roles"]["judge"]["dir"], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k")
        worker = _fork(lambda: _serve(cfg, libc, job, req_r, rep_w))
        os.close(req_r)
        os.close(rep_w)
    except BaseException as e:
        fail(cfg, "init2", e)
    _report(cfg, "worker", *_wait_for(worker))
    return 0


def _serve(cfg: dict, libc, job: dict, req_r: int, rep_w: int) -> int:
    from . import program

    _setup(cfg, libc, "program", {0, 1, 2, req_r, rep_w})
    program.serve(job["code"], req_r, rep_w, cfg["max_result_bytes"])
    return 1  # serve() never returns: it exits with the program's status


def _wait_for(pid: int) -> tuple[int, object]:
    """Reap children until ``pid`` exits; its status and resource usage."""
    while True:
        got, st, usage = os.wait4(-1, 0)
        if got == pid:
            return st, usage


def _wait_tests(cfg: dict, judge: int, solution: int) -> None:
    """Wait for the judge; then give the solution's side a moment to exit, or kill it."""
    done: dict[int, tuple] = {}
    while judge not in done:
        got, st, usage = os.wait4(-1, 0)
        done[got] = (st, usage)
    st, usage = done[judge]
    _report(cfg, "judge", st, usage)
    # the judge told the program to quit (0), or saw it exit (4: its init reports how): wait for it
    clean = os.WIFEXITED(st) and os.WEXITSTATUS(st) in (0, 4)
    end = time.monotonic() + (QUIT_GRACE_S if clean else 0)
    while solution not in done:
        got, st, usage = os.wait4(-1, os.WNOHANG)
        if got:
            done[got] = (st, usage)
        elif time.monotonic() >= end:
            try:
                os.kill(solution, SIGKILL)
            except OSError:
                pass
            end = math.inf
        else:
            time.sleep(0.001)
    if not cfg["namespaces"] and solution in done:  # basic: the worker is our own child
        st, usage = done[solution]
        if not (os.WIFSIGNALED(st) and os.WTERMSIG(st) == SIGKILL and end == math.inf):
            _report(cfg, "worker", st, usage)


def _report(cfg: dict, role: str, st: int, usage) -> None:
    cpu = usage.ru_utime + usage.ru_stime
    line = f"signal {os.WTERMSIG(st)}" if os.WIFSIGNALED(st) else f"exit {os.WEXITSTATUS(st)}"
    os.write(cfg["status_fd"], f"{role} {line} {cpu:.3f}\n".encode())


def _kill_descendants() -> None:
    """Basic mode: SIGKILL every process below us (orphans were re-parented to us) until none."""
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
        below: set[int] = set()
        frontier = {me}
        while frontier:
            frontier = {p for p, pp in parent.items() if pp in frontier and p not in below}
            below |= frontier
        if not below:
            return
        for pid in below:
            try:
                os.kill(pid, SIGKILL)
            except OSError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass


# --- the processes that run code ------------------------------------------------------------------


def _setup(cfg: dict, libc, role: str, keep: set, null_stdio: bool = False) -> None:
    """Limits, uid, no privileges, seccomp, dumpable flag, close fds (see the module docstring)."""
    spec = cfg["roles"][role]
    try:
        os.chdir(spec["dir"])
        os.environ["HOME"] = os.environ["TMPDIR"] = spec["dir"]
        _limits(cfg, spec["limits"])
        uid = spec["uid"]
        if uid is not None:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        prctl(libc, PR_SET_NO_NEW_PRIVS, 1)
        _drop_caps(libc)
        if cfg["seccomp"]:
            _seccomp(libc, cfg["seccomp"], cfg["allow_unix"])
        else:
            _block_sockets()
        prctl(libc, PR_SET_DUMPABLE, spec["dumpable"])
        if null_stdio:  # the judge's output would be readable through the program's stdout file
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.close(null)
        for fd in [int(x) for x in os.listdir("/proc/self/fd")]:
            if fd not in keep and (fd > 2 or not null_stdio):
                try:
                    os.close(fd)
                except OSError:
                    pass
    except BaseException as e:
        fail(cfg, role, e)


def _limits(cfg: dict, lim: dict) -> None:
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
    # RLIMIT_NPROC counts all tasks of the uid: as root each role has a uid of its own; in a user
    # namespace the count is per namespace (plus our own processes: nproc_extra); otherwise add
    # what the user already runs, but for this process, which is the program's first task.
    nproc = lim["max_processes"] + cfg["nproc_extra"]
    if cfg["nproc_relative"]:
        nproc += _count_tasks(os.getuid()) - 1
    setlimit(resource.RLIMIT_NPROC, nproc)


def _count_tasks(uid: int) -> int:
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


def _drop_caps(libc) -> None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    call(libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()), "capset")


def _seccomp(libc, spec: dict, allow_unix: bool) -> None:
    """Install the BPF filter described in :mod:`r1rl.rewards.sandbox`'s docstring."""
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
    op(jset, CLONE_NS_MASK, jf=1)
    op(ret, eperm)
    op(ret, allow)

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(b"".join(prog))
    fprog = Prog(len(prog), ctypes.addressof(buf))
    ul = ctypes.c_ulong
    call(libc.prctl(PR_SET_SECCOMP, ul(2), ul(ctypes.addressof(fprog)), ul(0), ul(0)), "seccomp")


def _block_sockets() -> None:
    """Without seccomp: a best-effort Python prelude that refuses new non-AF_UNIX sockets.

    ``socket.socket.__init__`` delegates to ``_socket.socket.__init__`` looked up at call time, so
    replacing ``_socket.socket`` guards both; ``ctypes`` or a subprocess can still get around it.
    """
    import _socket
    import socket  # noqa: F401  (built on the real type before the swap)

    c_socket = _socket.socket

    class GuardedSocket(_socket.socket):
        __slots__ = ()

        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None and family != _socket.AF_UNIX:
                raise PermissionError(1, "network access is disabled in this sandbox")
            c_socket.__init__(self, family, type, proto, fileno)

    _socket.socket = _socket.SocketType = GuardedSocket  # type: ignore[misc]  # replacing the class is the guard
