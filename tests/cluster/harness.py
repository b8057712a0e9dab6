"""The rehearsal cluster: what a KubeRay deployment runs, on this machine, started and stopped here.

- a Ray head with ``--num-cpus=0`` (GCS, dashboard, Jobs API, the job drivers; never a task), as in
  k8s/ray-cluster.phiray.yaml;
- worker nodes joined with ``ray start --address``, one per KubeRay group, each offering what its group
  offers: ``cpu`` (CPUs), ``gpu`` (``--num-gpus=1``: work asking for a GPU lands there and runs on the
  CPU, as torch sees no CUDA), ``evaluator`` (the ``evaluator`` resource, where untrusted code runs);
  the worker raylets run as an ordinary user (created when we are root), like a pod's uid 1000;
- the nodes talk over 127.0.0.1 (``--node-ip-address`` and explicit ports), and every listener is on
  loopback: `ray start` runs through ray_loopback.py, which keeps the loopback node address that Ray 2.60
  would replace by the machine's (and with it bind GCS/raylet gRPC on all interfaces); the loopback switch
  (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER) is off for `ray start` itself (``--address`` refuses it) and on for
  every client (:func:`cluster_env`);
- the run directory on an S3-compatible server on 127.0.0.1 (moto), reached through the usual AWS
  variables, which every node has in its environment (as a pod would from a Secret).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster_fixtures import RayHead, _jobs_api_up, _our_pids, head_env, stop_head
from s3_fixtures import S3Server
from serve_fixtures import free_port

VENV_BIN = str(Path(sys.executable).parent)
RAY = os.path.join(VENV_BIN, "ray")
# `ray start` that keeps --node-ip-address=127.0.0.1: every listener of the rehearsal on loopback (issue 29).
RAY_START = [sys.executable, str(Path(__file__).with_name("ray_loopback.py")), "start"]
USER = "phiray-rehearsal"
WORKER_PORT_BASE = 20000  # below /proc/sys/net/ipv4/ip_local_port_range (32768-60999 by default)
# What each KubeRay worker group offers (k8s/ray-cluster.phiray.yaml), scaled to a 2-core machine.
GROUPS: dict[str, list[str]] = {
    "cpu": ["--num-cpus=2"],
    "gpu": ["--num-cpus=1", "--num-gpus=1"],
    "evaluator": ["--num-cpus=1", '--resources={"evaluator": 4}'],
}


@dataclass
class Node:
    group: str
    temp_dir: str
    process: subprocess.Popen
    user: str


@dataclass
class Rehearsal:
    head: RayHead
    gcs_address: str
    nodes: list[Node]
    s3: S3Server
    bucket: str
    user: str
    node_ids: dict[str, str] = field(default_factory=dict)  # Ray node id -> group ("head" for the head)
    granted: list[str] = field(default_factory=list)
    log_dir: Path = Path("/tmp")

    def group_of(self, node_id: str) -> str:
        return self.node_ids.get(node_id, "unknown")


def ordinary_user() -> tuple[str, int, int]:
    """(name, uid, gid) the worker raylets run as: ourselves when not root, else a user made for it."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return entry.pw_name, entry.pw_uid, entry.pw_gid
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
        entry = pwd.getpwnam(USER)
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def grant_traverse(user: str, paths: list[str]) -> list[str]:
    """Let ``user`` reach the interpreter and the checkout: directories above them that others cannot
    enter (e.g. a pyenv under /root, mode 700) get one ACL entry (execute only, for this user only);
    returns them, for :func:`revoke_traverse`. Where ACLs are missing we say what is needed."""
    granted = []
    for path in paths:
        for parent in [p for p in Path(os.path.realpath(path)).parents][::-1]:
            if parent.stat().st_mode & 0o001 or str(parent) in granted:
                continue
            if shutil.which("setfacl") is None:
                raise RuntimeError(f"{parent} is closed to {user}: install `acl` (setfacl) or run as that user")
            subprocess.run(["setfacl", "-m", f"u:{user}:x", str(parent)], check=True)
            granted.append(str(parent))
    return granted


def revoke_traverse(user: str, granted: list[str]) -> None:
    for path in granted:
        subprocess.run(["setfacl", "-x", f"u:{user}", path], check=False)


def cluster_env(token_path: Path, s3: S3Server) -> dict[str, str]:
    """The clients' environment (cluster queries, `phiray submit`): with the loopback switch, which makes a
    driver joining 127.0.0.1 take 127.0.0.1 as this machine's address (without it, ``ray.init`` looks for
    a raylet on the machine's address and hangs). `ray start` gets :func:`start_env` instead."""
    env = head_env(token_path)
    env.update(s3.env)
    env["PHIRAY_MBPP_PATH"] = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "mbpp")
    env["DS_ACCELERATOR"] = "cpu"
    env["RAY_task_events_report_interval_ms"] = "200"  # placement records appear sooner
    return env


def start_env(env: dict[str, str]) -> dict[str, str]:
    """`ray start`'s environment: without the loopback switch, which `ray start --address` refuses at import;
    ray_loopback.py sets it again for the processes the node starts."""
    return {k: v for k, v in env.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}


def _ports(*names: str) -> list[str]:
    return [f"--{name}={free_port()}" for name in names]


def start_cluster(s3: S3Server, log_dir: Path, timeout_s: float = 240.0) -> Rehearsal:
    user, uid, gid = ordinary_user()
    head_tmp = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    token_path = Path(head_tmp) / "token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o644)  # the ordinary user's raylets authenticate with it too
    os.chmod(head_tmp, 0o755)
    env = cluster_env(token_path, s3)
    gcs_port, dash_port = free_port(), free_port()
    head_cmd = [
        *RAY_START,
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={head_tmp}",
        "--num-cpus=0",
        "--num-gpus=0",
        "--disable-usage-stats",
        f"--port={gcs_port}",
        f"--dashboard-port={dash_port}",
    ]
    head_cmd += _ports(
        "ray-client-server-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "metrics-export-port",
        "runtime-env-agent-port",
        "node-manager-port",
        "object-manager-port",
    )
    proc = subprocess.Popen(
        head_cmd,
        env=start_env(env),
        stdout=open(log_dir / "head.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    head = RayHead(f"http://127.0.0.1:{dash_port}", env, head_tmp, proc)
    rehearsal = Rehearsal(head, f"127.0.0.1:{gcs_port}", [], s3, s3.new_bucket("rehearsal"), user, log_dir=log_dir)
    try:
        if os.geteuid() == 0:
            rehearsal.granted = grant_traverse(
                user, [sys.executable, os.path.realpath(sys.executable), __file__, env["PHIRAY_MBPP_PATH"]]
            )
        _wait(lambda: _jobs_api_up(head), proc, timeout_s, log_dir / "head.log")
        for group, flags in GROUPS.items():
            rehearsal.nodes.append(_join(rehearsal, group, flags, uid, gid, log_dir, timeout_s))
        rehearsal.node_ids = _identify(rehearsal)
    except BaseException:
        stop_cluster(rehearsal)
        raise
    return rehearsal


def _join(
    r: Rehearsal, group: str, flags: list[str], uid: int, gid: int, log_dir: Path, timeout_s: float, attempts: int = 3
) -> Node:
    """Start one worker node and wait until the GCS lists it. One at a time, and retried: a raylet
    gives up registering after a fixed 30 s, which a loaded 2-core machine can exceed."""
    log = log_dir / f"{group}.log"
    for attempt in range(1, attempts + 1):
        node = _start_worker(r, group, flags, uid, gid, log_dir)
        _wait(lambda: node.process.poll() is not None or node_up(r, node), r.head.process, timeout_s, log)
        if node.process.poll() is None:
            return node
        shutil.copy(log, log.with_suffix(f".attempt{attempt}.log"))
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    raise RuntimeError(f"the {group} node did not join after {attempts} attempts: {log.read_text()[-3000:]}")


def _start_worker(r: Rehearsal, group: str, flags: list[str], uid: int, gid: int, log_dir: Path) -> Node:
    temp_dir = tempfile.mkdtemp(prefix=f"r{group[0]}", dir="/tmp")
    os.chown(temp_dir, uid, gid)
    # Worker ports from a block outside the kernel's ephemeral range, where free_port() draws the rest.
    min_port = WORKER_PORT_BASE + 250 * list(GROUPS).index(group)
    cmd = [
        *RAY_START,
        "--block",
        f"--address={r.gcs_address}",
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        *flags,
        f"--min-worker-port={min_port}",
        f"--max-worker-port={min_port + 200}",
    ]
    cmd += _ports(
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "metrics-export-port",
        "runtime-env-agent-port",
        "node-manager-port",
        "object-manager-port",
    )
    env = {**start_env(r.head.env), "HOME": pwd.getpwuid(uid).pw_dir, "USER": pwd.getpwuid(uid).pw_name}
    if os.geteuid() == 0:  # the raylet and every worker it forks run as the ordinary user
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", *cmd]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=open(log_dir / f"{group}.log", "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=temp_dir,
    )
    return Node(group, temp_dir, proc, pwd.getpwuid(uid).pw_name)


def _wait(ready, proc: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            why = (
                f"`{' '.join(map(str, proc.args[:3]))}` exited ({proc.returncode})"
                if proc.poll() is not None
                else "timed out"
            )
            raise RuntimeError(f"rehearsal cluster did not come up ({why}): {log.read_text()[-3000:]}")
        time.sleep(1.0)


def _cluster_query(r: Rehearsal, code: str) -> object:
    """Run ``code`` (which prints one JSON line) in a fresh process connected to the cluster."""
    prog = f"import json, ray\nray.init(address={r.gcs_address!r}, log_to_driver=False)\n{code}"
    out = subprocess.run(
        [sys.executable, "-c", prog],
        env=r.head.env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
        cwd="/tmp",
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith(("[", "{"))]
    if not lines:
        raise ValueError(f"no JSON from the cluster query: {out.stdout[-500:]} {out.stderr[-1500:]}")
    return json.loads(lines[-1])


def _alive_nodes(r: Rehearsal) -> list[dict]:
    try:
        return _cluster_query(r, "print(json.dumps([n for n in ray.nodes() if n['Alive']], default=str))")
    except (subprocess.CalledProcessError, ValueError, subprocess.TimeoutExpired):
        return []


def node_up(r: Rehearsal, node: Node) -> bool:
    return any(node.temp_dir in json.dumps(n) for n in _alive_nodes(r))


def _identify(r: Rehearsal) -> dict[str, str]:
    """Ray node id -> the group it belongs to (by its temp dir, which each raylet's record names)."""
    out = {}
    for node in _alive_nodes(r):
        where = json.dumps(node)
        group = next((n.group for n in r.nodes if n.temp_dir in where), "head")
        out[node["NodeID"]] = group
    return out


def kill_node(r: Rehearsal, group: str) -> None:
    """SIGKILL every process of the ``group`` node at once (raylet, object store, agents, workers, its
    `ray start`), as when a pod's machine is lost; the GCS notices by its health checks."""
    node = next(n for n in r.nodes if n.group == group)
    try:
        os.killpg(node.process.pid, signal.SIGKILL)  # `ray start` ran in a session of its own
    except ProcessLookupError:
        pass
    _kill_all(_our_pids(node.temp_dir))  # anything of the node's that left the group
    node.process.wait(timeout=30)


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def rejoin(r: Rehearsal, group: str, timeout_s: float = 240.0) -> None:
    """Replace the (killed) ``group`` node by a fresh one, as KubeRay would, and re-identify the nodes."""
    old = next(n for n in r.nodes if n.group == group)
    _kill_all(_our_pids(old.temp_dir))
    shutil.rmtree(old.temp_dir, ignore_errors=True)
    log = r.log_dir / f"{group}.log"
    if log.exists():
        shutil.copy(log, log.with_suffix(".killed.log"))
    entry = pwd.getpwnam(r.user)
    node = _join(r, group, GROUPS[group], entry.pw_uid, entry.pw_gid, r.log_dir, timeout_s)
    r.nodes[r.nodes.index(old)] = node
    r.node_ids.update(_identify(r))  # dead nodes keep their group: older manifests still name them


def stop_cluster(r: Rehearsal) -> None:
    """Workers first (SIGTERM to each `ray start` session, then whatever is left), then the head."""
    for node in r.nodes:
        stop_head(RayHead("", {}, node.temp_dir, node.process))
    stop_head(r.head)
    for node in r.nodes:
        for pid in _our_pids(node.temp_dir):
            os.kill(pid, 9)
        shutil.rmtree(node.temp_dir, ignore_errors=True)
    shutil.rmtree(r.head.temp_dir, ignore_errors=True)
    revoke_traverse(r.user, r.granted)
