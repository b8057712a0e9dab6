"""Slow Serve tests: 32 concurrent clients for a bounded time; `phiray serve` and `serve run` as real processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

from serve_fixtures import build_tiny_checkpoint
from test_serve import free_port

pytestmark = pytest.mark.slow
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_32_concurrent_clients_no_5xx_none_dropped(ray_session, tmp_path):
    from ray import serve

    from phiray.serve.app import build_app
    from phiray.serve.load import run_load

    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app({"model": str(ckpt), "model_name": "m", "max_batch_size": 32, "model_num_cpus": 0.5,
                             "evaluator_num_cpus": 0.25}), name="load", route_prefix="/")
        body = {"model": "m", "prompt": "def f(x):\n", "max_tokens": 16, "temperature": 0.7}
        result = asyncio.run(run_load(f"http://127.0.0.1:{port}", body, concurrency=32, duration_s=20))
        info = serve.get_deployment_handle("model", app_name="load").info.remote().result()
    finally:
        serve.shutdown()
    assert result.failures == [] and result.server_errors == 0, (result.failures[:3], result.statuses)
    assert set(result.statuses) == {200} and result.ok >= 32
    assert result.completion_tokens == 16 * result.ok  # every answer complete
    assert info["rows"] / info["batches"] > 1.5, info  # requests were really batched together


def _wait_ready(proc: subprocess.Popen, url: str, limit_s: float = 180) -> None:
    deadline = time.time() + limit_s
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "exited"
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"{url} not ready in {limit_s}s")


@pytest.mark.parametrize("how", ["phiray", "serve-run"])
def test_command_lines_serve_the_app(tmp_path, how):
    import openai

    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    bin_dir = os.path.dirname(sys.executable)
    if how == "phiray":
        cmd = [sys.executable, "-m", "phiray", "serve", "--model", str(ckpt), "--port", str(port),
               "run.num_cpus=2", "serve.model_name=cli"]
    else:  # a Serve config file (import_path + args), as `serve deploy` / a RayService would use it
        config = tmp_path / "serve.yaml"
        subprocess.run([sys.executable, "-m", "phiray", "serve", "--model", str(ckpt), "--port", str(port),
                        "--emit-config", str(config), "serve.model_name=cli"], cwd=REPO_ROOT, env=env, check=True)
        cmd = [os.path.join(bin_dir, "serve"), "run", str(config)]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        _wait_ready(proc, f"http://127.0.0.1:{port}/healthz")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        r = client.completions.create(model="cli", prompt="def f(", max_tokens=5, temperature=0)
        assert r.usage.completion_tokens == 5
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
