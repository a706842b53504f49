"""What an isolation mode amounts to on this machine: the plan the parent hands to the child.

Computed once per process (it depends on the kernel, the architecture, the interpreter's
location and whether we are root).
"""

from __future__ import annotations

import functools
import glob
import os
import platform
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from .process import SandboxError

# The system's shared-library directories (the interpreter's extension modules link against them).
_LIB_DIRS = ("/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32")
# Files the loader and a few honest programs read: the library cache, the device nodes.
_FILES = ("/etc/ld.so.cache", "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}  # system-call numbers (glibc has no wrapper)
_DEV_LINKS = (
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
)
# seccomp: audit arch, system-call numbers (asm/unistd_64.h, asm-generic/unistd.h).
SECCOMP = {
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


@dataclass(frozen=True)
class Plan:
    namespaces: bool
    userns: bool  # namespaces without root: a user namespace too
    root: bool  # switch to per-run uids (one for the program, one for the judge)
    view: dict | None  # namespaces: the program's filesystem (see view())
    seccomp: dict | None


@functools.cache
def plan(mode: str) -> Plan:
    """What isolation ``mode`` amounts to for this process (fixed for its lifetime)."""
    root = os.geteuid() == 0
    namespaces = mode == "namespaces"
    supported = "Seccomp:" in Path("/proc/self/status").read_text()
    return Plan(
        namespaces=namespaces,
        userns=namespaces and not root,
        root=root,
        view=view() if namespaces else None,
        seccomp=SECCOMP.get(platform.machine()) if supported else None,
    )


@functools.cache
def real_python() -> str:
    return os.path.realpath(sys.executable)


def _inside(path: str, dirs) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


@functools.cache
def view() -> dict:
    """The program's filesystem in namespaces mode: an allow-list, nothing else of the host.

    ``binds``: host paths shown read-only at the same place: the interpreter (its executable,
    standard library, ``lib-dynload`` and ``libpython``), the shared-library directories (on a
    multiarch system only their ``<multiarch>`` subdirectory, where the libraries are) and the
    loader's cache, a few ``/dev`` nodes. ``links``: symbolic links to recreate (``/lib`` ->
    ``usr/lib`` on merged-/usr systems, ``/dev/fd`` ...). ``masks``: directories inside a bound one
    covered by an empty tmpfs (the interpreter's ``site-packages``: the child runs ``-S``).
    No r1rl file is shown: the parent hands the child its code (see :mod:`.process`).
    """
    import sysconfig

    python = real_python()
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix)}
    stdlib = os.path.dirname(os.path.realpath(os.__file__))  # {base_prefix}/lib/python3.X
    found = {stdlib, os.path.join(stdlib, "lib-dynload")}
    libdir = sysconfig.get_config_var("LIBDIR")  # libpython, when the interpreter links it
    if libdir:
        found.add(os.path.realpath(libdir))
    found.update(os.path.join(p, "lib") for p in prefixes if p not in ("/", "/usr", "/usr/local"))
    links = list(_DEV_LINKS)
    multiarch = sysconfig.get_config_var("MULTIARCH")  # Debian's /usr/lib/x86_64-linux-gnu
    for d in _LIB_DIRS:
        if os.path.islink(d):
            links.append((d, os.readlink(d)))
        elif multiarch and os.path.isdir(os.path.join(d, multiarch)):
            found.add(os.path.join(d, multiarch))  # not the rest of /usr/lib (node_modules, jvm ...)
        elif os.path.isdir(d):
            found.add(d)
    dirs = sorted(d for d in found if os.path.isdir(d))
    dirs = [d for d in dirs if not _inside(d, [o for o in dirs if o != d])]  # outermost only
    files = [f for f in (python, *_FILES) if os.path.exists(f) and not _inside(f, dirs)]
    masks = [
        m
        for m in glob.glob(os.path.join(stdlib, "*-packages")) + glob.glob("/usr/*lib/python3*/*-packages")
        if os.path.isdir(m) and not os.path.islink(m) and _inside(m, dirs)
    ]
    if platform.machine() not in _PIVOT_ROOT:
        raise SandboxError(f"namespaces mode: no pivot_root system-call number for {platform.machine()}")
    pivot_root = _PIVOT_ROOT[platform.machine()]
    return {"binds": dirs + files, "links": links, "masks": sorted(masks), "pivot_root": pivot_root}


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


def run_uids(p: Plan) -> tuple[int | None, int | None]:
    """A fresh (program uid, judge uid) pair as root, distinct; ``(None, None)`` otherwise."""
    if not p.root:
        return None, None
    base, size = _uid_range()
    program = secrets.randbelow(size)
    judge = (program + 1 + secrets.randbelow(size - 1)) % size
    return base + program, base + judge
