"""Which processes listen on which TCP addresses, read from /proc (no `ss` needed): for the tests that check
every listener phiray starts (Ray's GCS, raylets, agents, workers, torch's rendezvous store, Serve's proxy)
binds a loopback address."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


@dataclass(frozen=True)
class Listener:
    pid: int
    address: str
    port: int
    process: str  # the command line, shortened

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback on a dual-stack socket
        return (mapped or ip).is_loopback

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.process}) listens on {self.address}:{self.port}"


def _decode(hex_address: str, family: int) -> str:
    raw = bytes.fromhex(hex_address)
    # /proc prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, words)


def listening_sockets() -> dict[str, tuple[str, int]]:
    """Socket inode -> (address, port) for every listening TCP socket in this network namespace."""
    out = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            address, port = fields[1].split(":")
            out[fields[9]] = (_decode(address, family), int(port, 16))
    return out


def _command(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:120]


def listeners_of(pids: set[int]) -> list[Listener]:
    """Every listening TCP socket held by one of ``pids`` (processes that vanish meanwhile are skipped)."""
    sockets = listening_sockets()
    found = []
    for pid in sorted(pids):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in sockets:
                address, port = sockets[target[8:-1]]
                found.append(Listener(pid, address, port, _command(pid)))
    return found


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the command may hold spaces and parentheses
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def descendants(*roots: int) -> set[int]:
    """``roots`` and every process below them (Ray's GCS and raylet are children of the process that started
    them; its workers and agents are the raylet's)."""
    tree, seen, todo = _children(), set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(tree.get(pid, []))
    return seen


def off_loopback(pids: set[int]) -> list[Listener]:
    """The listeners of ``pids`` reachable from another machine."""
    return [listener for listener in listeners_of(pids) if not listener.loopback]


class ListenerSampler(threading.Thread):
    """Every listener held by ``roots`` and their descendants, sampled until :meth:`stop` (a listener may
    live only for part of a run: torch's rendezvous store exists only while a fit runs)."""

    def __init__(self, *roots: int, interval_s: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.roots, self.interval_s = roots or (os.getpid(),), interval_s
        self.seen: set[Listener] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.seen.update(listeners_of(descendants(*self.roots)))
            self.done.wait(self.interval_s)

    def stop(self) -> set[Listener]:
        self.done.set()
        self.join()
        self.seen.update(listeners_of(descendants(*self.roots)))
        return self.seen
