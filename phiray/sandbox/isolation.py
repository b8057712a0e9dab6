"""Linux isolation primitives through ctypes (stdlib only; used by the launcher before the sandbox starts).

We call the syscalls directly rather than shelling out to unshare(1): util-linux's multi-uid mapping needs
the setuid ``newuidmap`` helper (often absent), and we need the mount sequence and the privilege drop to
happen in one process in a fixed order. Python 3.11 has no ``os.unshare``, hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import signal
import time

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
LINUX_CAPABILITY_VERSION_3, CAP_LAST = 0x20080522, 63
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
    _check(
        _libc.prctl(
            ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
        ),
        "prctl",
    )


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
    limits = [
        (resource.RLIMIT_AS, memory_mb << 20),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_FSIZE, fsize_mb << 20),
        (resource.RLIMIT_NOFILE, nofile),
        (resource.RLIMIT_CORE, 0),
    ]
    for kind, value in limits:
        resource.setrlimit(kind, (value, value if kind != resource.RLIMIT_CPU else value + 1))


def drop_to(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good (capabilities go with uid 0) and forbid regaining privileges.
    The kernel clears the parent-death signal on this credential change: callers re-arm it."""
    try:
        os.setgroups([])
    except OSError:
        pass  # setgroups is denied in some user namespaces; the launcher already cleared them
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def die_with_parent(parent_pid: int | None = None, alive_fd: int | None = None) -> None:
    """SIGKILL us when our parent dies, then make sure it had not died already (the race PDEATHSIG leaves).

    Every credential change (setresuid, unshare(CLONE_NEWUSER), dropping capabilities) clears the
    parent-death signal (kernel commit_creds), so this is called again after each of them. ``parent_pid``:
    the pid getppid() must still return; ``alive_fd``: a pipe whose writer is the parent (EOF = gone),
    for PID 1 of a new PID namespace, whose getppid() is 0."""
    prctl(PR_SET_PDEATHSIG, 9)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
    if alive_fd is not None and select.select([alive_fd], [], [], 0)[0]:
        os._exit(1)


def write_own_maps(inside: int, outer_uid: int, outer_gid: int) -> None:
    """Map our own uid/gid from before the unshare (``outer_*``) to ``inside`` in the user namespace we just
    created: the one mapping an unprivileged process may write for itself (no CAP_SETUID, no newuidmap)."""
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"{inside} {outer_uid} 1\n"),
        ("gid_map", f"{inside} {outer_gid} 1\n"),
    ):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """No capabilities at all, now or after an execve (bounding and ambient sets emptied), no new privileges.
    The creator of a user namespace holds every capability in it; the candidate must hold none."""
    for cap in range(CAP_LAST + 1):
        if _libc.prctl(ctypes.c_int(PR_CAPBSET_DROP), ctypes.c_ulong(cap), 0, 0, 0) != 0:
            if ctypes.get_errno() == 22:  # EINVAL: past the kernel's last capability
                break
    _libc.prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
    data = (_CapData * 2)()  # all zero: no effective, permitted or inheritable capability
    _check(_libc.capset(ctypes.byref(_CapHeader(LINUX_CAPABILITY_VERSION_3, 0)), data), "capset")
    prctl(PR_SET_NO_NEW_PRIVS, 1)


# cgroup v1 (this kernel's layout; on cgroup v2 or where /sys/fs/cgroup is read-only, the rlimits, the tmpfs
# sizes and RLIMIT_FSIZE are the bounds): one directory per execution under each controller, and a
# ``candidate`` child whose limits bind the untrusted process tree alone. Memory here is what RLIMIT_AS does
# not see: memfd/shmem pages, page cache, pipe buffers.
CGROUP_ROOT, CGROUP_PARENT, CGROUP_CONTROLLERS = "/sys/fs/cgroup", "phiray-sandbox", ("memory", "pids")


def cgroup_dirs(name: str) -> list[str]:
    return [f"{CGROUP_ROOT}/{c}/{CGROUP_PARENT}/{name}" for c in CGROUP_CONTROLLERS]


def cgroups_writable() -> bool:
    return all(os.access(f"{CGROUP_ROOT}/{c}", os.W_OK) for c in CGROUP_CONTROLLERS)


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def make_cgroups(name: str, tree_bytes: int, candidate_bytes: int, candidate_pids: int) -> list[int]:
    """Create the execution's cgroups, move this process (and so all it forks) into them, and return
    O_WRONLY fds on the candidate child's ``cgroup.procs`` files: the candidate writes "0" to them (itself)
    before any untrusted byte runs. [] where cgroups are not writable."""
    if not cgroups_writable():
        return []
    memory, pids = cgroup_dirs(name)
    for path in (memory, pids):
        os.makedirs(path + "/candidate", exist_ok=True)
    for path, limit in ((memory, tree_bytes), (memory + "/candidate", candidate_bytes)):
        _write(f"{path}/memory.limit_in_bytes", str(limit))
        if os.path.exists(f"{path}/memory.memsw.limit_in_bytes"):  # swap accounting on: bound swap too
            _write(f"{path}/memory.memsw.limit_in_bytes", str(limit))
    _write(f"{pids}/candidate/pids.max", str(candidate_pids))
    for path in (memory, pids):
        _write(f"{path}/cgroup.procs", str(os.getpid()))
    return [os.open(f"{path}/candidate/cgroup.procs", os.O_WRONLY) for path in (memory, pids)]


def join_cgroups(fds: list[int]) -> None:
    for fd in fds:
        os.write(fd, b"0")
        os.close(fd)


def remove_cgroups(name: str) -> bool:
    """rmdir the execution's cgroups; False while a process of it is still being torn down."""
    done = True
    for path in cgroup_dirs(name):
        for sub in (path + "/candidate", path):
            try:
                os.rmdir(sub)
            except FileNotFoundError:
                pass
            except OSError:
                done = False
    return done


def sweep(uid: int) -> int:
    """Kill every process of ``uid`` (fallback mode's escapees). Fast path: a child becomes that uid and
    kill(-1)s, which reaches exactly the processes it may signal, i.e. that uid's, in one system call. A
    process of that uid can SIGSTOP the child, so it gets a bound; past it, we kill it and scan /proc as
    root (nobody can stop us)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            for _ in range(3):  # a fork racing the first kill is caught by the next
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    pidfd = os.pidfd_open(pid)
    try:
        finished = bool(select.select([pidfd], [], [], 1.0)[0])
    finally:
        os.close(pidfd)
    if not finished:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    if not finished:
        sweep_by_scan(uid)
    return 0


def sweep_by_scan(uid: int) -> int:
    """Kill every process whose real uid is ``uid`` by scanning /proc; returns how many."""
    killed = 0
    for _ in range(20):
        found = 0
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/status") as fh:
                    line = next(line for line in fh if line.startswith("Uid:"))
                if int(line.split()[1]) == uid:
                    os.kill(int(entry), signal.SIGKILL)
                    found += 1
            except (OSError, StopIteration, ValueError):
                continue
        killed += found
        if not found:
            break
        time.sleep(0.01)
    return killed
