"""Slow Serve tests: 32 concurrent clients for a bounded time; `phiray serve` and `serve run` as real processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

import httpx
import pytest
from serve_fixtures import free_port
from vllm_fixtures import build_vllm_checkpoint, stop, vllm_env, wait_ready

pytestmark = pytest.mark.slow
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_32_concurrent_clients_no_5xx_none_dropped(ray_session, tmp_path):
    from ray import serve

    from phiray.serve.app import build_app
    from phiray.serve.load import run_load

    ckpt = build_vllm_checkpoint(tmp_path / "ckpt")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(
            build_app(
                {
                    "model": str(ckpt),
                    "model_name": "m",
                    "max_batch_size": 32,
                    "model_num_cpus": 1,
                    "evaluator_num_cpus": 0.25,
                }
            ),
            name="load",
            route_prefix="/",
        )
        body = {"model": "m", "prompt": "def f(x):\n", "max_tokens": 16, "temperature": 0.7}
        result = asyncio.run(run_load(f"http://127.0.0.1:{port}", body, concurrency=32, duration_s=20))
        flood_end, completions_end = asyncio.run(_flood_and_generate(f"http://127.0.0.1:{port}", body))
    finally:
        serve.shutdown()
    assert result.failures == [] and result.server_errors == 0, (result.failures[:3], result.statuses)
    assert set(result.statuses) == {200} and result.ok >= 32
    assert result.completion_tokens == 16 * result.ok  # every answer complete
    # 12 executions that each spin to their 3 s timeout queue at the evaluator (4 at a time: >= 9 s);
    # generation meanwhile is served from the model's own replica and finishes long before them.
    assert completions_end < flood_end, (completions_end, flood_end)


async def _flood_and_generate(url: str, body: dict) -> tuple[float, float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:

        async def execute() -> float:
            r = await http.post("/v1/evaluate", json={"code": "while True:\n    pass\n", "tests": "", "timeout_s": 3})
            assert r.status_code == 200 and r.json()["status"] == "timeout", r.text
            return time.perf_counter()

        async def generate() -> float:
            await asyncio.sleep(1.0)  # the flood is queued by now
            for _ in range(3):
                r = await http.post("/v1/completions", json=body)
                assert r.status_code == 200, r.text
            return time.perf_counter()

        *flood, completions_end = await asyncio.gather(*[execute() for _ in range(12)], generate())
    return max(flood), completions_end


@pytest.mark.parametrize("how", ["phiray", "serve-run"])
def test_command_lines_serve_the_app(tmp_path, how):
    import openai

    ckpt = build_vllm_checkpoint(tmp_path / "ckpt")
    port = free_port()
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**vllm_env(), "RAY_TMPDIR": ray_tmp, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    bin_dir = os.path.dirname(sys.executable)
    if how == "phiray":
        cmd = [
            sys.executable,
            "-m",
            "phiray",
            "serve",
            "--model",
            str(ckpt),
            "--port",
            str(port),
            "run.num_cpus=2",
            "serve.model_name=cli",
        ]
    else:  # a Serve config file (import_path + args), as `serve deploy` / a RayService would use it
        config = tmp_path / "serve.yaml"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "phiray",
                "serve",
                "--model",
                str(ckpt),
                "--port",
                str(port),
                "--emit-config",
                str(config),
                "serve.model_name=cli",
            ],
            cwd=REPO_ROOT,
            env=env,
            check=True,
        )
        cmd = [os.path.join(bin_dir, "serve"), "run", str(config)]
    log = tmp_path / "serve.log"  # a file, not a pipe: nobody reads the engine's chatter while it runs
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log=log, model="cli")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).status_code == 200
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        r = client.completions.create(model="cli", prompt="def f(", max_tokens=5, temperature=0)
        assert r.usage.completion_tokens == 5
    finally:
        stop(proc, timeout_s=60)
        shutil.rmtree(ray_tmp, ignore_errors=True)
