"""The sandbox's process tree. ``python -I -S -B launcher.py zygote CONTROL_FD`` starts a warm interpreter
(stdlib only, no site-packages, empty environment) that forks one launcher per execution on request, so an
execution costs forks, not an interpreter start-up (``launcher.py MODE VERDICT_FD SYNC_W SYNC_R ROOT`` runs
a single one directly). Per execution, in namespaces mode (the same tree as root and as an ordinary user):

    zygote           kills every launcher it started when the executor goes away (EOF on its socket)
    launcher (L)     dies with the zygote; in the caller's PID namespace; the executor SIGKILLs it at the end
      └─ judge (T)   PID 1 of new user/PID/mount/net/IPC/UTS namespaces (one uid: ours, or a throwaway one
           │         when we are root); dies with L; builds a fresh read-only root; runs the tests
           └─ candidate (C)  in a nested user namespace with no capabilities (so it can neither ptrace nor
                     read T, which is not dumpable, nor signal it: T is its namespace's init), rlimits and
                     its own memory/pids cgroup where cgroups are writable; runs the untrusted code

Every process in the PID namespace dies with T, so one SIGKILL to L ends the whole tree, whatever the
candidate forked or daemonised. The judge imports nothing the candidate could have written: the sandbox's
own modules are loaded by file path in the zygote before any candidate exists, the common stdlib is
preloaded, and the judge's sys.path keeps only read-only locations.
stdin carries two length-prefixed JSON messages: first the code and limits (read before C exists, so C
may know them), then the tests and the per-execution token (read by T only after C was forked and after
C closed stdin: the candidate never has either in its memory). T writes the verdict to VERDICT_FD, which
C closes before running anything; the token is in it only if every test passed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback


def _load_sandbox_modules() -> None:
    """wire, isolation, judge, candidate from this file's directory, by path: that directory never goes on
    sys.path (-I keeps the script's directory off it), so no later import can resolve to a planted file."""
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("wire", "isolation", "seccomp", "judge", "candidate"):
        spec = importlib.util.spec_from_file_location(name, os.path.join(here, f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_load_sandbox_modules()
import candidate  # noqa: E402
import isolation  # noqa: E402
import judge  # noqa: E402
import seccomp  # noqa: E402

NS_FLAGS = (
    isolation.CLONE_NEWUSER
    | isolation.CLONE_NEWNS
    | isolation.CLONE_NEWPID
    | isolation.CLONE_NEWNET
    | isolation.CLONE_NEWIPC
    | isolation.CLONE_NEWUTS
)
# rlimits mode as root: imported before the judge and the candidate become throwaway uids, in case the
# interpreter's files are not readable by others. (Not in the zygote: a bigger zygote makes every fork slower.)
PRELOAD = (
    "typing math cmath re collections itertools functools heapq bisect string random statistics copy "
    "operator fractions decimal datetime hashlib json array numbers textwrap unicodedata dataclasses "
    "enum abc time linecache marshal types builtins"
).split()
REAP_EVERY_S = 1.0


def read_message(fd: int) -> dict:
    head = _read_exact(fd, 4)
    return json.loads(_read_exact(fd, struct.unpack(">I", head)[0]))


def _read_exact(fd: int, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError("stdin closed early")
        out += chunk
    return out


def preload() -> None:
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def readonly_import_path(mounts_readonly: bool) -> None:
    """Keep on sys.path only entries the candidate cannot write to: the nearest existing ancestor is on a
    read-only mount (namespaces), or writable by its owner only (rlimits, where the candidate has another
    uid when we are root), and forget the finders cached for the others (those of the kept entries stay
    warm: the same read-only directories, bound at the same paths)."""
    keep = []
    for entry in sys.path:
        probe = entry or "."
        while not os.path.exists(probe) and probe not in ("/", ""):
            probe = os.path.dirname(probe)
        try:
            if mounts_readonly and os.statvfs(probe).f_flag & os.ST_RDONLY:
                keep.append(entry)
            elif not mounts_readonly and not os.stat(probe).st_mode & 0o022:
                keep.append(entry)
        except OSError:
            continue
    for entry in set(sys.path) - set(keep):
        sys.path_importer_cache.pop(entry, None)
    sys.path[:] = keep


def zygote(control_fd: int) -> int:
    """Fork one launcher per request (a warm interpreter: no start-up cost per execution).

    A request is a JSON {"mode", "root"} with six fds attached (SCM_RIGHTS): stdin (spec), stdout, stderr,
    verdict, sync-up, sync-down. The reply is the launcher's pid; it leads its own session. When the
    executor's end of the socket closes (it exited, or was SIGKILLed), every launcher still running is
    killed, and with it its whole tree."""
    control = socket.socket(fileno=control_fd)
    control.settimeout(REAP_EVERY_S)  # wake up to reap and to remove finished executions' cgroups
    launchers: set[int] = set()
    cgroups: set[str] = {name for name in _leftover_cgroups()}
    try:
        while True:
            _reap(launchers, cgroups)
            try:
                message, fds, _, _ = socket.recv_fds(control, 4096, 6)
            except TimeoutError:
                continue
            except OSError:
                return 0
            if not message:
                return 0
            request = json.loads(message)
            if "sweep" in request:
                control.sendall(struct.pack(">i", isolation.sweep(int(request["sweep"]))))
                continue
            if len(fds) != 6:
                return 0
            pid = _fork_launcher(control, request, fds)
            launchers.add(pid)
            control.sendall(struct.pack(">i", pid))
    finally:
        for pid in launchers:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        deadline = time.monotonic() + 2.0
        while (launchers or cgroups) and time.monotonic() < deadline:
            _reap(launchers, cgroups)
            time.sleep(0.02)


def _fork_launcher(control: socket.socket, request: dict, fds: list[int]) -> int:
    pid = os.fork()
    if pid == 0:
        control.close()
        os.setsid()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds[:3]:
            os.close(fd)
        code = 1
        try:
            code = run(request["mode"], fds[3], fds[4], fds[5], request["root"])
        except BaseException:  # noqa: BLE001 - never fall back into the zygote's loop
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(code)
    for fd in fds:
        os.close(fd)
    return pid


def _reap(launchers: set[int], cgroups: set[str]) -> None:
    """Reap finished launchers (their pids stay reserved until then: the executor's pidfd) and remove the
    cgroups of executions whose processes are all gone."""
    while True:
        try:
            pid = os.waitpid(-1, os.WNOHANG)[0]
        except ChildProcessError:
            break
        if pid == 0:
            break
        launchers.discard(pid)
        cgroups.add(cgroup_name(os.getpid(), pid))
    for name in list(cgroups):
        if isolation.remove_cgroups(name):
            cgroups.discard(name)


def _leftover_cgroups() -> list[str]:
    """Cgroups of executions whose zygote died before removing them (an empty one can always be removed)."""
    try:
        return [
            entry.name
            for entry in os.scandir(f"{isolation.CGROUP_ROOT}/memory/{isolation.CGROUP_PARENT}")
            if entry.is_dir()
        ]
    except OSError:
        return []


def cgroup_name(zygote_pid: int, launcher_pid: int) -> str:
    return f"{zygote_pid}-{launcher_pid}"


def main(argv: list[str]) -> int:
    if argv[1] == "zygote":
        return zygote(int(argv[2]))
    return run(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5])


def run(mode: str, verdict_fd: int, sync_w: int, sync_r: int, root: str) -> int:
    """One execution (this process is L): read the spec, take cgroups, enter the namespaces, fork the judge."""
    parent = os.getppid()
    isolation.die_with_parent(parent)
    spec = read_message(0)
    limits = spec["limits"]
    spec["cgroup_fds"] = []
    if os.geteuid() == 0:
        try:
            spec["cgroup_fds"] = isolation.make_cgroups(
                cgroup_name(parent, os.getpid()),
                (limits["memory_mb"] + limits["judge_mb"]) << 20,
                (limits["memory_mb"] + 64) << 20,
                limits["nproc"] + 4,
            )
        except OSError as err:  # a cgroup tree we may not write (a container's read-only /sys): rlimits only
            print(f"sandbox: no cgroup for this execution: {err}", file=sys.stderr)
    if mode == "ns":
        spec["bind_fds"] = enter_namespaces(sync_w, spec["binds"], spec["uid_base"])
        isolation.die_with_parent(parent)  # the credential change cleared it
    os.close(sync_w)
    os.close(sync_r)
    alive_r, alive_w = os.pipe()  # T watches it: EOF means L is gone (closes the PDEATHSIG race)
    pid = os.fork()
    if pid == 0:
        os.close(alive_w)
        try:
            judge_process(mode, spec, verdict_fd, root, alive_r)
        except BaseException:  # noqa: BLE001 - a broken sandbox must say why (the verdict stays "no pass")
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        os._exit(0)
    os.close(alive_r)
    os.close(verdict_fd)
    os.close(0)
    for fd in spec["cgroup_fds"]:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return 0 if os.WIFEXITED(status) else 1


def enter_namespaces(sync_w: int, binds: list[str], uid_base: int) -> dict[str, int]:
    """unshare into new namespaces and become root there, mapped to one host uid: a throwaway one when we
    are root (a forked helper still outside writes the map: that needs CAP_SETUID there), else our own
    (the one map an unprivileged process may write for itself). Returns O_PATH handles on the directories
    to bind, taken inside the new mount namespace (bind sources must be ours)."""
    as_root, outer_uid, outer_gid = os.geteuid() == 0, os.geteuid(), os.getegid()
    if as_root:
        os.setgroups([])  # no host supplementary groups (gid 0!) leak into the sandbox
        helper, to_helper_w, from_helper_r = _map_writer(os.getpid(), uid_base)
    try:
        isolation.unshare(NS_FLAGS)
        if not as_root:
            isolation.write_own_maps(0, outer_uid, outer_gid)
    except OSError as err:
        if as_root:
            os.write(to_helper_w, b"X")
        os.write(sync_w, b"E" + str(err).encode()[:200])
        os._exit(97)
    if as_root:
        os.write(to_helper_w, b"R")
        answer = os.read(from_helper_r, 256)
        os.waitpid(helper, 0)
        os.close(to_helper_w)
        os.close(from_helper_r)
        if answer != b"G":
            os.write(sync_w, answer if answer.startswith(b"E") else b"Emaps not written")
            os._exit(98)
    fds = {p: os.open(p, os.O_PATH) for p in binds if os.path.lexists(p)}
    os.setresgid(0, 0, 0)  # ns-root: files we create in the new root need a mapped owner
    os.setresuid(0, 0, 0)
    return fds


def _map_writer(target: int, uid_base: int) -> tuple[int, int, int]:
    """A child that, on "R", maps ns uid/gid 0 of ``target`` to host ``uid_base`` and answers "G" or "E..."."""
    to_helper_r, to_helper_w = os.pipe()
    from_helper_r, from_helper_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        answer = b"N"
        if os.read(to_helper_r, 1) == b"R":
            try:
                for name, text in (
                    ("uid_map", f"0 {uid_base} 1\n"),
                    ("setgroups", "deny"),
                    ("gid_map", f"0 {uid_base} 1\n"),
                ):
                    with open(f"/proc/{target}/{name}", "w") as fh:
                        fh.write(text)
                answer = b"G"
            except OSError as err:
                answer = b"E" + f"cannot write uid maps: {err}".encode()[:200]
        os.write(from_helper_w, answer)
        os._exit(0)
    os.close(to_helper_r)
    os.close(from_helper_w)
    return helper, to_helper_w, from_helper_r


def judge_process(mode: str, spec: dict, verdict_fd: int, root: str, alive_r: int) -> None:
    isolation.die_with_parent(alive_fd=alive_r)
    # PID 1 of a namespace receives from inside it only the signals it handles: with SIGINT back to its
    # default, the candidate cannot signal the judge at all (SIGKILL and SIGSTOP included).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    limits = spec["limits"]
    if mode == "ns":
        isolation.build_root(root, spec["bind_fds"], limits["tmpfs_mb"])
        workdir, (c_uid, t_uid) = "/work", (None, None)
    else:
        # As root, candidate and judge get throwaway uids (so RLIMIT_NPROC binds, the executor can sweep the
        # candidate's escapees, and neither runs generated code as root).
        workdir = root
        c_uid, t_uid = spec["uids"] if os.geteuid() == 0 else (None, None)
        if c_uid is not None:
            preload()
    readonly_import_path(mounts_readonly=mode == "ns")
    t_sock, c_sock = socket.socketpair()
    me, pid = os.getpid(), os.fork()
    if pid == 0:
        t_sock.close()
        candidate_process(c_sock, spec["code"], workdir, mode, c_uid, limits, spec["cgroup_fds"], me)
        os._exit(0)
    c_sock.close()
    for fd in spec["cgroup_fds"]:
        os.close(fd)
    if t_uid is not None:
        isolation.drop_to(t_uid, t_uid)
        isolation.die_with_parent(alive_fd=alive_r)
    isolation.prctl(isolation.PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/<pid>/mem (after any uid change)
    isolation.set_limits(
        limits["memory_mb"] + limits["judge_mb"], limits["cpu_s"] + 5, limits["nproc"] + 4, limits["fsize_mb"]
    )
    t_sock.settimeout(limits["wall_s"] + 1)  # no wait without a bound, even if L were gone
    task = read_message(0)
    os.close(0)
    status, detail = judge.run_tests(t_sock, task["tests"], task.get("entry_point"))
    if status == "crashed":
        status, detail = refine(pid, detail, limits)
    verdict = {"status": status, "detail": detail}
    if status == "passed":
        verdict["token"] = task["token"]
    os.write(verdict_fd, json.dumps(verdict).encode())
    os.close(verdict_fd)


def candidate_process(
    sock: socket.socket,
    code: str,
    workdir: str,
    mode: str,
    uid: int | None,
    limits: dict,
    cgroup_fds: list[int],
    judge_pid: int,
) -> None:
    keep = {sock.fileno(), *cgroup_fds}
    os.close(0)
    for fd in range(3, 1024):  # verdict fd, spec pipe, liveness pipe: gone before any untrusted byte runs
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.open("/dev/null", os.O_RDONLY)  # becomes fd 0
    isolation.join_cgroups(cgroup_fds)
    os.chdir(workdir)
    isolation.set_limits(limits["memory_mb"], limits["cpu_s"], limits["nproc"], limits["fsize_mb"])
    if mode == "ns":
        # A nested user namespace left without a uid map, and no capabilities in it: the judge's namespace
        # is its parent, where the candidate holds nothing (no ptrace of the non-dumpable judge, no mounts).
        isolation.unshare(isolation.CLONE_NEWUSER)
        isolation.drop_capabilities()
    elif uid is not None:
        isolation.drop_to(uid, uid)
    else:
        isolation.prctl(isolation.PR_SET_NO_NEW_PRIVS, 1)
    isolation.die_with_parent(judge_pid if mode != "ns" else None)
    if seccomp.available():
        seccomp.install()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.clear()  # the interpreter's own locale coercion (LC_CTYPE) included: an empty environment
    for stream in (sys.stdout, sys.stderr):  # the tree is SIGKILLed at the end: nothing may wait in a buffer
        stream.reconfigure(write_through=True, line_buffering=True)
    candidate.main(sock, code)
    sock.close()


def refine(pid: int, detail: str, limits: dict) -> tuple[str, str]:
    """Why the candidate process ended, from its wait status and resource usage: SIGXCPU, or SIGKILL after
    its CPU seconds -> timeout; SIGKILL near its memory limit (the kernel's OOM killer) -> memory; other
    signals and exits -> crashed, named."""
    for _ in range(40):
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.005)
    else:
        return "crashed", detail + "; it closed its connection"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        cpu = usage.ru_utime + usage.ru_stime
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits["cpu_s"] - 0.5):
            return "timeout", f"candidate killed by {signal.Signals(sig).name} after {cpu:.1f} CPU s"
        if sig == signal.SIGKILL and usage.ru_maxrss * 1024 >= 0.8 * (limits["memory_mb"] << 20):
            return "memory", f"candidate killed by SIGKILL at {usage.ru_maxrss >> 10} MiB resident"
        return "crashed", f"candidate killed by {signal.Signals(sig).name}"
    return "crashed", f"{detail}; exit code {os.WEXITSTATUS(status)}"


if __name__ == "__main__":
    sys.exit(main(sys.argv))
