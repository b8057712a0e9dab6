"""The sandbox's process tree. ``python -I -S launcher.py zygote CONTROL_FD`` starts a warm interpreter
(stdlib only, no site-packages, empty environment) that forks one launcher per execution on request, so an
execution costs forks, not an interpreter start-up (``launcher.py MODE VERDICT_FD SYNC_W SYNC_R ROOT`` runs
a single one directly). Per execution:

    zygote
    launcher (L)  -- in the caller's PID namespace; the executor kills it on timeout
      └─ judge (T)  PID 1 of a new PID namespace: builds the root, forks C, drops to uid 2, runs the tests
           └─ candidate (C)  uid 1, rlimits, cwd /work: runs the untrusted code, answers calls

T dies with L (PR_SET_PDEATHSIG) and every process in the namespace dies with T (it is the namespace's
init), so one SIGKILL to L ends the whole tree, whatever the candidate forked or daemonised.
stdin carries two length-prefixed JSON messages: first the code and limits (read before C exists, so C
may know them), then the tests and the per-execution token (read by T only after C was forked and after
C closed stdin: the candidate never has either in its memory). T writes the verdict to VERDICT_FD, which
C closes before running anything; the token is in it only if every test passed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir off sys.path

import candidate  # noqa: E402
import isolation  # noqa: E402
import judge  # noqa: E402

NS_FLAGS = (isolation.CLONE_NEWUSER | isolation.CLONE_NEWNS | isolation.CLONE_NEWPID | isolation.CLONE_NEWNET
            | isolation.CLONE_NEWIPC | isolation.CLONE_NEWUTS)


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


def enter_namespaces(sync_w: int, binds: list[str], uid_base: int) -> dict[str, int]:
    """unshare, have a helper still outside write our uid/gid maps, become ns-root; returns O_PATH
    handles on the directories to bind, taken while we were still the host user (so an interpreter under
    /root, mode 0700, stays reachable) and inside the new mount namespace (bind sources must be ours).

    The maps (ns uids 0,1,2 -> throwaway host uids base..base+2) must be written from the parent user
    namespace by a process with CAP_SETUID there: a forked helper, so no round trip to the executor."""
    if os.geteuid() == 0:
        os.setgroups([])  # no host supplementary groups (gid 0!) leak into the sandbox
    to_helper_r, to_helper_w = os.pipe()
    from_helper_r, from_helper_w = os.pipe()
    me, helper = os.getpid(), os.fork()
    if helper == 0:
        answer = b"N"
        if os.read(to_helper_r, 1) == b"R":
            try:
                for name, text in (("uid_map", f"0 {uid_base} 3\n"), ("setgroups", "deny"),
                                   ("gid_map", f"0 {uid_base} 3\n")):
                    with open(f"/proc/{me}/{name}", "w") as fh:
                        fh.write(text)
                answer = b"G"
            except OSError as err:
                answer = b"E" + f"cannot write uid maps: {err}".encode()[:200]
        os.write(from_helper_w, answer)
        os._exit(0)
    try:
        isolation.unshare(NS_FLAGS)
    except OSError as err:
        os.write(to_helper_w, b"X")
        os.write(sync_w, b"E" + str(err).encode()[:200])
        os._exit(97)
    os.write(to_helper_w, b"R")
    answer = os.read(from_helper_r, 256)
    os.waitpid(helper, 0)
    for fd in (to_helper_r, to_helper_w, from_helper_r, from_helper_w):
        os.close(fd)
    if answer != b"G":
        os.write(sync_w, answer if answer.startswith(b"E") else b"Emaps not written")
        os._exit(98)
    fds = {p: os.open(p, os.O_PATH) for p in binds if os.path.lexists(p)}
    os.setresgid(0, 0, 0)  # ns-root (a throwaway host uid): files we create in the new root need a mapped owner
    os.setresuid(0, 0, 0)
    return fds


def zygote(control_fd: int) -> int:
    """Fork one launcher per request (a warm interpreter: no start-up cost per execution).

    A request is a JSON {"mode", "root"} with six fds attached (SCM_RIGHTS): stdin (spec), stdout, stderr,
    verdict, sync-up, sync-down. The reply is the launcher's pid; it leads its own session."""
    control = socket.socket(fileno=control_fd)
    while True:
        while True:  # reap finished launchers (their pids stay reserved until then: the executor's pidfd)
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        try:
            message, fds, _, _ = socket.recv_fds(control, 4096, 6)
        except OSError:
            return 0
        if not message:
            return 0
        request = json.loads(message)
        if "sweep" in request:
            control.sendall(struct.pack(">i", sweep(int(request["sweep"]))))
            continue
        if len(fds) != 6:
            return 0
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
        control.sendall(struct.pack(">i", pid))


def sweep(uid: int) -> int:
    """Kill every process of ``uid`` (fallback mode's escapees): a child becomes that uid and kill(-1)s,
    which reaches exactly the processes it may signal, i.e. that uid's, in one system call."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setresuid(uid, uid, uid)
            for _ in range(3):  # a fork racing the first kill is caught by the next
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    return 0


def main(argv: list[str]) -> int:
    if argv[1] == "zygote":
        return zygote(int(argv[2]))
    return run(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5])


def run(mode: str, verdict_fd: int, sync_w: int, sync_r: int, root: str) -> int:
    """One execution (this process is L): read the spec, enter the namespaces, fork the judge."""
    spec = read_message(0)
    if mode == "ns":
        spec["bind_fds"] = enter_namespaces(sync_w, spec["binds"], spec["uid_base"])
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
    _, status = os.waitpid(pid, 0)
    return 0 if os.WIFEXITED(status) else 1


def judge_process(mode: str, spec: dict, verdict_fd: int, root: str, alive_r: int) -> None:
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([alive_r], [], [], 0)[0]:
        os._exit(1)  # L died before PDEATHSIG was armed
    limits = spec["limits"]
    if mode == "ns":
        isolation.build_root(root, spec["bind_fds"], limits["tmpfs_mb"])
        workdir, (c_uid, t_uid) = "/work", (1, 2)
    else:
        # As root, candidate and judge get throwaway uids (so RLIMIT_NPROC binds, the executor can sweep the
        # candidate's escapees, and neither runs generated code as root), with the common stdlib preloaded
        # in case the interpreter's files are not readable by others.
        workdir = root
        c_uid, t_uid = spec["uids"] if os.geteuid() == 0 else (None, None)
        if c_uid is not None:
            preload()
    t_sock, c_sock = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        t_sock.close()
        candidate_process(c_sock, spec["code"], workdir, c_uid, limits)
        os._exit(0)
    c_sock.close()
    isolation.prctl(isolation.PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/<pid>/mem from same-uid processes
    if t_uid is not None:
        isolation.drop_to(t_uid, t_uid)
    isolation.set_limits(limits["memory_mb"] + 512, limits["cpu_s"] + 5, limits["nproc"], limits["fsize_mb"])
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


def candidate_process(sock: socket.socket, code: str, workdir: str, uid: int | None, limits: dict) -> None:
    keep = sock.fileno()
    os.close(0)
    for fd in range(3, 1024):  # verdict fd, spec pipe, liveness pipe: gone before any untrusted byte runs
        if fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass
    os.open("/dev/null", os.O_RDONLY)  # becomes fd 0
    os.chdir(workdir)
    isolation.set_limits(limits["memory_mb"], limits["cpu_s"], limits["nproc"], limits["fsize_mb"])
    if uid is not None:
        isolation.drop_to(uid, uid)
    else:
        isolation.prctl(isolation.PR_SET_NO_NEW_PRIVS, 1)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.environ.clear()  # the interpreter's own locale coercion (LC_CTYPE) included: an empty environment
    for stream in (sys.stdout, sys.stderr):  # the tree is SIGKILLed at the end: nothing may wait in a buffer
        stream.reconfigure(write_through=True, line_buffering=True)
    candidate.main(sock, code)
    sock.close()


PRELOAD = ("typing math cmath re collections itertools functools heapq bisect string random statistics copy "
           "operator fractions decimal datetime hashlib json array numbers textwrap unicodedata dataclasses "
           "enum abc time").split()


def preload() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass


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
