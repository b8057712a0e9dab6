"""A real local Ray head (`ray start --head`, loopback only, token auth, dashboard for the Jobs API)
and a fake Kubernetes API server, for the `phiray submit` tests."""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from serve_fixtures import free_port

VENV_BIN = str(Path(sys.executable).parent)
REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def k8s_docs() -> list[tuple[str, dict]]:
    """(file name, object) for every document in k8s/*.yaml (parsed once; copy before mutating)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [
        (p.name, d)
        for p in sorted((REPO / "k8s").glob("*.yaml"))
        for d in yaml.load_all(p.read_text(), Loader=loader)
        if d
    ]


def by_kind(kind: str) -> list[dict]:
    return [d for _, d in k8s_docs() if d["kind"] == kind]


def cluster_specs() -> list[tuple[str, dict]]:
    """Every Ray cluster the manifests create: the RayCluster and each RayJob's/RayService's inline one."""
    out = [("RayCluster", d["spec"]) for d in by_kind("RayCluster")]
    out += [(d["metadata"]["name"], d["spec"]["rayClusterSpec"]) for d in by_kind("RayJob")]
    out += [(d["metadata"]["name"], d["spec"]["rayClusterConfig"]) for d in by_kind("RayService")]
    return out


@dataclass
class RayHead:
    address: str  # the dashboard (Jobs API) URL
    env: dict[str, str]  # what a client needs: the token, the loopback settings
    temp_dir: str
    process: subprocess.Popen


def head_env(token_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update(
        {
            # Every listener on 127.0.0.1 (shared/RAY_ON_CPU.md); the jobs' drivers inherit PATH (the venv's
            # `phiray`) and these from the head.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
            "RAY_USAGE_STATS_ENABLED": "0",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            # Ray 2.60 turns token auth on when a token exists; use our own, never ~/.ray's.
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_path),
        }
    )
    env.pop("RAY_AUTH_TOKEN", None)
    return env


def start_head(num_cpus: int = 2, timeout_s: float = 90.0) -> RayHead:
    temp_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's socket paths have a length limit
    token_path = Path(temp_dir) / "token"
    token_path.write_text(secrets.token_hex(32))
    env = head_env(token_path)
    ports = {
        name: free_port()
        for name in (
            "port",
            "dashboard-port",
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "metrics-export-port",
        )
    }
    cmd = [
        os.path.join(VENV_BIN, "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--dashboard-host",
        "127.0.0.1",
        "--temp-dir",
        temp_dir,
        f"--num-cpus={num_cpus}",
        '--resources={"evaluator": 4}',  # as the KubeRay evaluator group offers it (jobs/configs/*.yaml)
        "--disable-usage-stats",
    ] + [f"--{k}={v}" for k, v in ports.items()]
    log = open(Path(temp_dir) / "head.log", "w")
    # A session of its own: stopping it never touches other Ray clusters on the machine (no `ray stop`).
    process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(f"http://127.0.0.1:{ports['dashboard-port']}", env, temp_dir, process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop_head(head)
            raise RuntimeError(f"ray start exited: {(Path(temp_dir) / 'head.log').read_text()[-2000:]}")
        if _jobs_api_up(head):
            return head
        time.sleep(1.0)
    stop_head(head)
    raise RuntimeError("the Ray head's Jobs API did not come up")


def _jobs_api_up(head: RayHead) -> bool:
    probe = "from ray.job_submission import JobSubmissionClient as C; C(%r).list_jobs()" % head.address
    result = subprocess.run([sys.executable, "-c", probe], env=head.env, capture_output=True, timeout=60)
    return result.returncode == 0


def list_jobs(head: RayHead) -> list[dict]:
    """The head's jobs (JobDetails as dicts), read in a fresh process: Ray caches the auth mode per process."""
    code = (
        "import json; from ray.job_submission import JobSubmissionClient as C; "
        "print(json.dumps([j.model_dump(mode='json') for j in C(%r).list_jobs()]))" % head.address
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=head.env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _our_pids(temp_dir: str) -> list[int]:
    """Processes of this head: they all name its private temp dir on their command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if temp_dir.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def stop_head(head: RayHead) -> None:
    """SIGTERM to the head's own process group (ray start ran in a session of its own), then SIGKILL to
    whatever of this head is left after a grace period."""
    try:
        os.killpg(head.process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 8
    while _our_pids(head.temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _our_pids(head.temp_dir):  # stragglers (gcs_server may ignore SIGTERM for a while)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        head.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        head.process.kill()
    shutil.rmtree(head.temp_dir, ignore_errors=True)


# --------------------------------------------------------------------------- fake Kubernetes API


@dataclass
class FakeKube:
    url: str
    requests: list[dict] = field(default_factory=list)
    # Successive (jobDeploymentStatus, jobStatus) answers to status reads; the last one repeats.
    statuses: list[tuple[str, str]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def kubeconfig(self, path: Path, token: str = "test-token") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "fake",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "u", "user": {"token": token}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
                }
            )
        )
        return path


def start_fake_kube() -> FakeKube:
    """Answers the two calls `phiray submit --k8s` makes: create a RayJob, read its status."""
    fake = FakeKube(url="")
    created: dict[str, dict] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.requests.append(
                {
                    "method": "POST",
                    "path": self.path,
                    "body": body,
                    "headers": dict(self.headers),
                    "auth": self.headers.get("Authorization"),
                    "content_type": self.headers.get("Content-Type"),
                }
            )
            created[body["metadata"]["name"]] = body
            self._reply(201, body)

        def do_GET(self):
            fake.requests.append({"method": "GET", "path": self.path, "auth": self.headers.get("Authorization")})
            name = self.path.rstrip("/").split("/")[-2] if self.path.endswith("/status") else ""
            if name not in created:
                return self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            reads = sum(1 for r in fake.requests if r["method"] == "GET" and r["path"] == self.path)
            deployment, job = fake.statuses[min(reads, len(fake.statuses)) - 1]
            self._reply(200, {**created[name], "status": {"jobDeploymentStatus": deployment, "jobStatus": job}})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.server, fake.url = server, f"http://127.0.0.1:{server.server_address[1]}"
    return fake
