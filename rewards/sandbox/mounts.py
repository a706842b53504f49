"""Mounts of the sandbox's own processes: the program's filesystem view, built from an allow-list.

Child code, like :mod:`.child` (which calls it): it runs inside the sandbox in ``python -I -S``
and imports only the standard library.
"""

from __future__ import annotations

import ctypes
import os

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
# Where the program's root is built (on the host: a path that exists; covered by the new root).
NEW_ROOT = "/tmp"


def call(result: int, what: str) -> None:
    """Raise :class:`OSError` with errno's text when a libc call returned non-zero."""
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mounter(libc):
    def mount(src, target, fstype, flags, data=None):
        enc = lambda s: None if s is None else s.encode()
        rc = libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
        call(rc, f"mount {target}")

    return mount


def build_root(cfg: dict, libc) -> None:
    """A new root built from an allow-list (:func:`.modes.view`): the interpreter, the shared
    libraries and a few ``/dev`` nodes, read-only; fresh ``/tmp``, ``/dev/shm`` and ``/proc``.
    Nothing else of the host is reachable: the old root is detached."""
    mount = mounter(libc)
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below may propagate to the host
    view, new = cfg["view"], NEW_ROOT
    # opened first: a source under NEW_ROOT would be hidden by the tmpfs mounted on it
    sources = [os.open(p, os.O_PATH | os.O_CLOEXEC) for p in view["binds"]]
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, fd in zip(view["binds"], sources):
        target = new + path
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        os.close(fd)
    for path in view["masks"]:
        mount("tmpfs", new + path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0755")
    for path, target in view["links"]:
        os.makedirs(os.path.dirname(new + path), exist_ok=True)
        os.symlink(target, new + path)
    _readonly(mount, new)
    for path in ("/tmp", "/dev/shm", "/proc"):
        os.makedirs(new + path, exist_ok=True)
    for path in ("/tmp", "/dev/shm"):
        mount("tmpfs", new + path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmp_mb']}m,mode=1777")
    # while the host's /proc is still visible (a user namespace may mount proc only then)
    mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, new, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(new)
    call(libc.syscall(ctypes.c_long(view["pivot_root"]), b".", b"."), "pivot_root")
    call(libc.umount2(b".", MNT_DETACH), "umount2(old root)")  # pivot_root(".", "."): see its man page
    os.chdir("/")


def _readonly(mount, under: str) -> None:
    """Re-mount every mount under ``under`` read-only, one by one (with the bind mounts' submounts)."""
    with open("/proc/self/mountinfo") as f:
        points = [_unescape(line.split()[4]) for line in f]
    for mp in points:
        if mp == under or not mp.startswith(under + "/"):
            continue
        # MS_BIND: change this mount only, never the (shared) filesystem
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY | _mount_flags(os.statvfs(mp).f_flag)
        mount(None, mp, None, flags)


def _unescape(field: str) -> str:
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


def _mount_flags(st_flags: int) -> int:
    """Keep a mount's nosuid/nodev/noexec/atime flags (a user namespace may not clear them)."""
    flags = 0
    for st, ms in ((2, 2), (4, 4), (8, 8), (1024, 1024), (2048, 2048), (4096, 1 << 21)):
        if st_flags & st:
            flags |= ms
    return flags
