"""What an isolation mode amounts to on this machine: the plan the parent hands to the child.

Computed once per process (it depends on the kernel, the architecture, the interpreter's
location and whether we are root), except the credential paths, looked up per run.
"""

from __future__ import annotations

import functools
import os
import platform
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from .process import SandboxError

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
    reveal: list  # [(untraversable dir, [interpreter dirs under it])], root + namespaces
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
        reveal=_reveal_groups(interpreter_dirs()) if namespaces and root else [],
        seccomp=SECCOMP.get(platform.machine()) if supported else None,
    )


@functools.cache
def real_python() -> str:
    return os.path.realpath(sys.executable)


@functools.cache
def interpreter_dirs() -> list[str]:
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


def hide_paths() -> list[str]:
    """Credential paths under the caller's home (looked up per run: HOME may change)."""
    needed = interpreter_dirs()
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
