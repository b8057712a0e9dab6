"""Linux isolation primitives through ctypes (stdlib only; used by the launcher before the sandbox starts).

We call the syscalls directly rather than shelling out to unshare(1): util-linux's multi-uid mapping needs
the setuid ``newuidmap`` helper (often absent), and we need the mount sequence and the privilege drop to
happen in one process in a fixed order. Python 3.11 has no ``os.unshare``, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import resource

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"pivot_root: unknown syscall number on {os.uname().machine}")
    _check(_libc.syscall(ctypes.c_long(number), new_root.encode(), put_old.encode()), "pivot_root")


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), "prctl")


def _locked_flags(path: str) -> int:
    """Flags a bind remount must keep (the kernel refuses to clear them inside a user namespace)."""
    st = os.statvfs(path).f_flag
    flags = MS_NOSUID | MS_NODEV
    for st_bit, ms_bit in ((8, MS_NOEXEC), (1024, MS_NOATIME), (2048, MS_NODIRATIME), (4096, MS_RELATIME)):
        if st & st_bit:
            flags |= ms_bit
    return flags


def bind_readonly(source: str, target: str) -> None:
    """Bind ``source`` (a path or /proc/self/fd/N) at ``target``, read-only."""
    try:
        mount(source, target, None, MS_BIND)
    except OSError:  # a tree with locked sub-mounts can only be bound recursively
        mount(source, target, None, MS_BIND | MS_REC)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(source))


def build_root(root: str, binds: dict[str, int], tmpfs_mb: int) -> None:
    """A fresh root: read-only binds of the interpreter's directories, tmpfs /work and /tmp, a minimal
    /dev; everything else (home, repo, run dirs, /proc, /sys, /etc) simply does not exist in it."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    for path, fd in binds.items():  # fd: an O_PATH handle opened before we lost the host uid
        inside = root + path
        if os.path.islink(path) and os.path.dirname(path) == "/":
            os.symlink(os.readlink(path), inside)  # /bin -> usr/bin on merged-/usr systems
            continue
        os.makedirs(inside, mode=0o755, exist_ok=True)
        bind_readonly(f"/proc/self/fd/{fd}", inside)
        os.close(fd)
    os.makedirs(root + "/dev", exist_ok=True)
    for name in ("null", "zero", "urandom", "random"):
        open(f"{root}/dev/{name}", "w").close()
        mount(f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for name in ("work", "tmp"):
        os.makedirs(f"{root}/{name}", exist_ok=True)
        mount("tmpfs", f"{root}/{name}", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmpfs_mb}m,mode=1777")
    mount(None, root, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    pivot_root(".", ".")
    umount(".")  # the old root, stacked under the new one by pivot_root(".", ".")
    os.chdir("/")


def set_limits(memory_mb: int, cpu_s: int, nproc: int, fsize_mb: int, nofile: int = 64) -> None:
    """rlimits; hard == soft so the candidate cannot raise them back."""
    limits = [(resource.RLIMIT_AS, memory_mb << 20), (resource.RLIMIT_CPU, cpu_s),
              (resource.RLIMIT_NPROC, nproc), (resource.RLIMIT_FSIZE, fsize_mb << 20),
              (resource.RLIMIT_NOFILE, nofile), (resource.RLIMIT_CORE, 0)]
    for kind, value in limits:
        resource.setrlimit(kind, (value, value if kind != resource.RLIMIT_CPU else value + 1))


def drop_to(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good (capabilities go with uid 0) and forbid regaining privileges."""
    try:
        os.setgroups([])
    except OSError:
        pass  # setgroups is denied in some user namespaces; the launcher already cleared them
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)
