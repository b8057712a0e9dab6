"""The caller's side of the sandbox: spawn one launcher per execution, feed it, watch it, judge the verdict.

    sb = Sandbox(cfg.sandbox)
    v = sb.check(code, tests, entry_point="f")              # Verdict(passed, status, detail, duration_s)
    vs = sb.check_many([{"code": ..., "tests": ..., "entry_point": ...}, ...])   # a thread pool

Isolation ``namespaces`` (user+PID+mount+net+IPC+UTS namespaces, a fresh read-only root, rlimits) is used
when the kernel allows it; otherwise one loud warning and ``rlimits`` (process group, rlimits, a throwaway
uid when we are root), unless ``refuse_without_namespaces``. A pass is *only* the per-execution random token
coming back on the verdict pipe; exit codes and output prove nothing.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phiray.config import SandboxConfig
from phiray.sandbox.isolation import sweep_by_scan

log = logging.getLogger("phiray.sandbox")
LAUNCHER = str(Path(__file__).with_name("launcher.py"))
STATUSES = ("passed", "failed", "timeout", "crashed", "memory", "error")
_PROBE: dict[str, bool] = {}
_PROBE_LOCK = threading.Lock()
JUDGE_MB = 512  # the judge's own address space on top of the candidate's (it holds the tests and results)
ZYGOTE_REPLY_S = 10.0  # the zygote answers in milliseconds; past this it is wedged and gets replaced


class SandboxUnavailable(RuntimeError):
    """Namespaces are required (refuse_without_namespaces / isolation=namespaces) but unavailable."""


@dataclass
class Verdict:
    passed: bool
    status: str  # one of STATUSES
    detail: str = ""
    duration_s: float = 0.0
    stdout: str = ""
    stderr: str = ""
    isolation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "status": self.status,
            "detail": self.detail,
            "duration_s": round(self.duration_s, 4),
        }


@dataclass
class PoolStats:
    executions: int = 0
    wall_s: float = 0.0
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.executions / self.wall_s if self.wall_s > 0 else 0.0


def interpreter() -> str:
    """The base interpreter (not the venv's wrapper): candidates get the standard library only."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _binds() -> list[str]:
    """Host directories visible (read-only) inside the sandbox: system libraries and the interpreter."""
    paths = ["/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"]
    for prefix in {sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(interpreter())))}:
        if not any(prefix == p or prefix.startswith(p + "/") for p in paths):
            paths.append(prefix)
    return paths


def _mount_point() -> str:
    path = os.path.join(tempfile.gettempdir(), f"phiray-sandbox-root-{os.geteuid()}")
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


class Sandbox:
    """Runs untrusted code against tests, one fresh isolated process tree per execution."""

    def __init__(self, cfg: SandboxConfig | None = None) -> None:
        self.cfg = cfg or SandboxConfig()
        self.stats = PoolStats()
        self._mode: str | None = None

    # ------------------------------------------------------------------ public API
    @property
    def isolation(self) -> str:
        """ "namespaces" or "rlimits" (decided once, by a probe, for ``isolation=auto``)."""
        if self._mode is None:
            self._mode = self._choose_mode()
        return self._mode

    def check(self, code: str, tests: str, entry_point: str | None = None, timeout_s: float | None = None) -> Verdict:
        """Run ``code`` then ``tests`` (and ``check(entry_point)`` when the tests define ``check``)."""
        return self._run(code, tests, entry_point, timeout_s or self.cfg.timeout_s, self.isolation)

    def check_many(self, jobs: list[dict[str, Any]], workers: int | None = None) -> list[Verdict]:
        """Verdicts for many {"code", "tests", "entry_point"?, "timeout_s"?} jobs, in order, on a pool."""
        from concurrent.futures import ThreadPoolExecutor

        if not jobs:
            return []
        mode = self.isolation  # probe once, before the threads start
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers or self.cfg.workers) as pool:
            futures = [
                pool.submit(
                    self._run,
                    j["code"],
                    j["tests"],
                    j.get("entry_point"),
                    j.get("timeout_s") or self.cfg.timeout_s,
                    mode,
                )
                for j in jobs
            ]
            verdicts = [f.result() for f in futures]
        wall = time.perf_counter() - start
        self.stats.executions += len(verdicts)
        self.stats.wall_s += wall
        for v in verdicts:
            self.stats.by_status[v.status] = self.stats.by_status.get(v.status, 0) + 1
        log.info(
            "sandbox: %d executions in %.2fs (%.1f/s, %d workers, %s)",
            len(verdicts),
            wall,
            len(verdicts) / wall if wall else 0.0,
            workers or self.cfg.workers,
            mode,
        )
        return verdicts

    # ------------------------------------------------------------------ mode selection
    def _choose_mode(self) -> str:
        if self.cfg.isolation == "rlimits":
            log.warning(
                "SANDBOX WARNING: isolation=rlimits was asked for: the file system and network "
                "are NOT isolated and, as a non-root user, the candidate runs as your own uid"
            )
            return "rlimits"
        with _PROBE_LOCK:
            if "ns" not in _PROBE:
                probe = self._run("x = 1", "assert x == 1", None, 20.0, "namespaces")
                _PROBE["ns"] = probe.passed
                if not probe.passed:
                    _PROBE["why"] = f"{probe.status}: {probe.detail}"
        if _PROBE["ns"]:
            return "namespaces"
        refuse = self.cfg.refuse_without_namespaces
        if refuse is None:
            refuse = on_a_cluster()
        if self.cfg.isolation == "namespaces" or refuse:
            raise SandboxUnavailable(
                f"sandbox: namespaces unavailable ({_PROBE.get('why')}) and the config refuses to run without them"
                + (
                    " (the default on a cluster: RAY_ADDRESS or KUBERNETES_SERVICE_HOST is set; set "
                    "sandbox.isolation=rlimits to run unisolated anyway)"
                    if self.cfg.refuse_without_namespaces is None
                    else ""
                )
            )
        log.warning(
            f"SANDBOX WARNING: Linux namespaces unavailable ({_PROBE.get('why')}); falling back "
            "to rlimits + process group: the file system and network are NOT isolated"
        )
        return "rlimits"

    # ------------------------------------------------------------------ one execution
    def _run(self, code: str, tests: str, entry_point: str | None, timeout_s: float, mode: str) -> Verdict:
        token = secrets.token_hex(16)
        base = 1_000_000 + secrets.randbelow(1 << 20) * 4  # throwaway uids: base, base+1 (C), base+2 (T)
        # namespaces: one shared empty mount point (each execution mounts its own tmpfs root on it, in its
        # own mount namespace); rlimits: a fresh world-writable directory per execution.
        workdir = _mount_point() if mode == "namespaces" else tempfile.mkdtemp(prefix="phiray-sb-")
        if mode == "rlimits":
            os.chmod(workdir, 0o777)
        limits = {
            "memory_mb": self.cfg.memory_mb,
            "cpu_s": self.cfg.cpu_s,
            "nproc": self.cfg.max_processes,
            "fsize_mb": self.cfg.max_file_mb,
            "tmpfs_mb": max(4 * self.cfg.max_file_mb, 16),
            "judge_mb": JUDGE_MB,
            "wall_s": timeout_s,
        }
        first = {"code": code, "limits": limits, "binds": _binds(), "uids": [base + 1, base + 2], "uid_base": base}
        second = {"tests": tests, "entry_point": entry_point, "token": token}
        try:
            run = _Execution(mode, workdir, base, timeout_s, self.cfg.max_output_bytes)
            run.start(_frame(first) + _frame(second))
            run.wait()
        finally:
            if mode == "rlimits":
                shutil.rmtree(workdir, ignore_errors=True)
        return run.verdict(token)


def on_a_cluster() -> bool:
    """A Ray cluster address or a Kubernetes pod: places where unisolated execution is refused by default."""
    return bool(os.environ.get("RAY_ADDRESS") or os.environ.get("KUBERNETES_SERVICE_HOST"))


def _frame(obj: dict) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


class _Execution:
    """One launcher process and its pipes, driven by a select loop (no thread per pipe)."""

    def __init__(self, mode: str, workdir: str, uid_base: int, timeout_s: float, cap: int) -> None:
        self.mode, self.workdir, self.uid_base, self.timeout_s, self.cap = mode, workdir, uid_base, timeout_s, cap
        self.out, self.err, self.raw_verdict = bytearray(), bytearray(), bytearray()
        self.timed_out, self.ns_error, self.started = False, "", 0.0
        self.duration = 0.0

    def start(self, payload: bytes) -> None:
        spec_r, spec_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        ver_r, ver_w = os.pipe()
        up_r, up_w = os.pipe()  # launcher -> us: "R" (namespaces made) or "E..." (refused)
        down_r, down_w = os.pipe()  # us -> launcher: reserved (kept so the launcher's fd layout is fixed)
        mode = "ns" if self.mode == "namespaces" else "rl"
        self.started = time.perf_counter()
        try:
            self.pid, self.pidfd = ZYGOTE.spawn(mode, self.workdir, [spec_r, out_w, err_w, ver_w, up_w, down_r])
        finally:
            for fd in (spec_r, out_w, err_w, ver_w, up_w, down_r):
                os.close(fd)
        os.set_blocking(spec_w, False)
        # pidfd readable = the launcher exited (it is the zygote's child, not ours: no waitpid here)
        self.fds = {out_r: self.out, err_r: self.err, ver_r: self.raw_verdict, up_r: None, self.pidfd: "exit"}
        self.spec_w, self.down_w, self.pending = spec_w, down_w, payload
        self.exited = False

    def wait(self) -> None:
        deadline = self.started + self.timeout_s
        exited_at = None
        try:
            while self.fds:
                now = time.perf_counter()
                if now >= deadline:
                    self.timed_out = True
                    break
                if exited_at is None and self.exited:
                    exited_at = now
                if exited_at is not None and now - exited_at > 0.5:
                    break  # the launcher is gone; something still holds a pipe (fallback mode daemons)
                self._pump(min(0.05, deadline - now))
        finally:
            self.duration = time.perf_counter() - self.started
            self._kill()
            drain_until = time.perf_counter() + 1.0
            while self.fds and time.perf_counter() < drain_until:  # EOF everywhere: the tree is gone
                self._pump(0.05)
            for fd in list(self.fds) + [self.spec_w, self.down_w]:
                if fd is not None and fd != self.pidfd:
                    os.close(fd)
            os.close(self.pidfd)
            self.fds = {}

    def _pump(self, timeout: float) -> None:
        writers = [self.spec_w] if self.pending and self.spec_w is not None else []
        readable, writable, _ = select.select(list(self.fds), writers, [], max(timeout, 0))
        if writable:
            self._write_spec()
        for fd in readable:
            self._read(fd)

    def _write_spec(self) -> None:
        try:
            written = os.write(self.spec_w, self.pending)
            self.pending = self.pending[written:]
        except (BlockingIOError, InterruptedError):
            return
        except BrokenPipeError:
            self.pending = b""
        if not self.pending:
            os.close(self.spec_w)
            self.spec_w = None

    def _read(self, fd: int) -> None:
        if fd == self.pidfd:
            self.exited = True
            del self.fds[fd]
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            del self.fds[fd]
            os.close(fd)
            return
        sink = self.fds[fd]
        if sink is None:
            self._handshake(chunk)
        elif len(sink) < self.cap:  # beyond the cap: read and drop, never buffer
            sink.extend(chunk[: self.cap - len(sink)])

    def _handshake(self, chunk: bytes) -> None:
        """The launcher only writes here to say why it could not make its namespaces."""
        if chunk.startswith(b"E"):
            self.ns_error = chunk[1:].decode(errors="replace")

    def _kill(self) -> None:
        """SIGKILL the launcher: the judge dies with it (PDEATHSIG) and the PID namespace with the judge.
        Fallback mode: the launcher's session/process group, then every process of the throwaway uid."""
        if self.mode == "rlimits":
            try:
                os.killpg(self.pid, signal.SIGKILL)  # L leads its own session; pgid == its pid
            except (ProcessLookupError, PermissionError):
                pass
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)  # no pid-reuse race: the pidfd is this process
        except ProcessLookupError:
            pass
        if self.mode == "rlimits" and os.geteuid() == 0:
            ZYGOTE.sweep(self.uid_base + 1)

    def verdict(self, token: str) -> Verdict:
        out, err = self.out.decode(errors="replace"), self.err.decode(errors="replace")
        make = lambda passed, status, detail: Verdict(
            passed,
            status,
            detail,
            self.duration,
            out,
            err,  # noqa: E731
            self.mode,
        )
        if self.ns_error:
            return make(False, "error", f"namespaces unavailable: {self.ns_error}")
        if self.timed_out:
            return make(False, "timeout", f"wall-clock limit of {self.timeout_s:g}s")
        try:
            data = json.loads(bytes(self.raw_verdict)) if self.raw_verdict else None
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("status") not in STATUSES:
            return make(False, "crashed", f"no verdict from the judge; stderr: {err[-300:]}")
        if data["status"] == "passed":
            ok = secrets.compare_digest(str(data.get("token", "")), token)
            return make(ok, "passed" if ok else "error", "" if ok else "verdict without the right token")
        return make(False, data["status"], str(data.get("detail", ""))[:2000])


class _Zygote:
    """The process-wide warm launcher (see launcher.py), started on first use, restarted if it died."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.owner = 0

    def spawn(self, mode: str, root: str, fds: list[int]) -> tuple[int, int]:
        """(pid, pidfd) of a new launcher holding ``fds`` as stdin/stdout/stderr/verdict/sync-up/sync-down."""
        with self.lock:
            for attempt in (0, 1):
                if self.proc is None or self.proc.poll() is not None or self.owner != os.getpid():
                    self._start()
                try:
                    socket.send_fds(self.sock, [json.dumps({"mode": mode, "root": root}).encode()], fds)
                    reply = self.sock.recv(4)
                    if len(reply) == 4:
                        pid = struct.unpack(">i", reply)[0]
                        # opened before our lock is released, i.e. before the zygote can reap the pid
                        return pid, os.pidfd_open(pid)
                except OSError:  # TimeoutError included: a wedged zygote is replaced, never waited on
                    if attempt:
                        raise
                self._stop()
            raise RuntimeError("sandbox: the launcher zygote does not answer")

    def sweep(self, uid: int) -> None:
        """Kill every process of ``uid`` (done by the zygote: one fork + kill(-1), no /proc scan)."""
        with self.lock:
            if self.proc is not None and self.proc.poll() is None and self.owner == os.getpid():
                try:
                    self.sock.sendall(json.dumps({"sweep": uid}).encode())
                    if len(self.sock.recv(4)) == 4:
                        return
                except OSError:  # TimeoutError included
                    self._stop()
        sweep_uid(uid)

    def _stop(self) -> None:
        """Kill the zygote (its launchers die with it: PDEATHSIG) and forget it."""
        if self.proc is not None and self.owner == os.getpid():
            self.proc.kill()
            try:
                self.proc.wait(timeout=ZYGOTE_REPLY_S)
            except subprocess.TimeoutExpired:
                pass
        if self.sock is not None:
            self.sock.close()
        self.proc, self.sock = None, None

    def _start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one request per packet
        self.proc = subprocess.Popen(
            [interpreter(), "-I", "-S", "-B", LAUNCHER, "zygote", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
        theirs.close()
        ours.settimeout(ZYGOTE_REPLY_S)
        self.sock, self.owner = ours, os.getpid()


ZYGOTE = _Zygote()


def sweep_uid(uid: int) -> int:
    """Kill every process whose real uid is ``uid`` (fallback mode's escapees); returns how many."""
    return sweep_by_scan(uid)
