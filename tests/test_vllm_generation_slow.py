"""Slow: real vLLM engines outside `phiray serve` — the OpenAI teacher against a bare vLLM OpenAI server
serving a checkpoint, and evaluation samples on Ray Data LLM (`evaluate.engine=vllm`) against transformers."""

from __future__ import annotations

import pytest
from serve_fixtures import free_port
from vllm_fixtures import build_vllm_checkpoint, start_vllm_server, stop, vllm_env, wait_ready

pytest.importorskip("vllm")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_vllm_checkpoint(tmp_path_factory.mktemp("vllm-ckpt"))


@pytest.fixture(scope="module")
def vllm_server(checkpoint, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-log") / "server.log"
    proc = start_vllm_server(checkpoint, port, "teacher", log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log=log, model="teacher")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_openai_teacher_against_vllm_caches_and_accounts(vllm_server, tmp_path, api):
    from phiray.config import TeacherConfig
    from phiray.teacher import Request, make_teacher

    cfg = TeacherConfig(
        kind="openai",
        base_url=vllm_server,
        model="teacher",
        api=api,
        max_tokens=12,
        temperature=0.8,
        concurrency=4,
        max_retries=1,
    )
    requests = [Request(key=f"r{i}", prompt=f"Write a function number {i}", seed=i) for i in range(6)]
    first = make_teacher(cfg, cache_dir=str(tmp_path / "cache")).complete(requests)
    assert all(r.ok and r.tokens_in > 0 and r.tokens_out == 12 and not r.cached for r in first), first
    assert len({r.text for r in first}) > 1
    # A rerun (a new teacher, as after a crash) is answered from the run's cache: no request is repeated.
    again = make_teacher(cfg, cache_dir=str(tmp_path / "cache")).complete(requests)
    assert all(r.cached for r in again) and [r.text for r in again] == [r.text for r in first]
    # Seeded sampling on the server: a fresh cache gets the same answers.
    fresh = make_teacher(cfg, cache_dir=str(tmp_path / "fresh")).complete(requests)
    assert [r.text for r in fresh] == [r.text for r in first]


def test_vllm_samples_equal_transformers_greedy_and_are_seeded(ray_session, checkpoint):
    from phiray.evals.benchmarks import Task
    from phiray.evals.generation import GenerationSettings, generate

    prompts = ["def add(a, b):\n", "def greet(name):\n", "for i in range(10):\n", "word " * 300]
    tasks = [Task(task_id=f"t/{i}", prompt=p, tests="", entry_point="f") for i, p in enumerate(prompts)]
    greedy = GenerationSettings(n=2, temperature=0.0, max_new_tokens=16)
    via_vllm = generate(str(checkpoint), tasks, greedy, engine="vllm")
    via_hf = generate(str(checkpoint), tasks, greedy, engine="transformers")
    assert [s["task_id"] for s in via_vllm] == [t.task_id for t in tasks for _ in range(2)]
    # Same tokens. The texts may differ only at the very end: a random byte-level model can stop inside a
    # multi-byte character, which transformers' decode renders as U+FFFD and vLLM's detokenizer holds back.
    tail = lambda rows: [{**r, "completion": r["completion"].rstrip("\ufffd")} for r in rows]  # noqa: E731
    assert tail(via_vllm) == tail(via_hf)  # and the prompt that does not fit gets empty samples on both
    assert via_vllm[-1]["completion"] == "" and via_vllm[0]["completion"]
    sampled = GenerationSettings(n=3, temperature=1.0, max_new_tokens=8, seed=7)
    a = generate(str(checkpoint), tasks[:2], sampled, engine="vllm")
    b = generate(str(checkpoint), tasks[:2], sampled, engine="vllm")
    assert a == b and len({s["completion"] for s in a[:3]}) > 1  # seeded per sample: reproducible, yet distinct


_REMOTE_GENERATE = """
import json, sys
import ray
from phiray.evals.benchmarks import Task
from phiray.evals.generation import GenerationSettings, generate_vllm
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
tasks = [Task(task_id=f"t/{i}", prompt=p, tests="", entry_point="f") for i, p in enumerate(json.loads(sys.argv[3]))]
gen = GenerationSettings(n=1, temperature=0.0, max_new_tokens=12)
print("SAMPLES " + json.dumps(generate_vllm(sys.argv[1], tasks, gen, model_source=sys.argv[2])))
"""


def test_vllm_engines_load_the_model_from_an_object_store_run_dir(s3_server, checkpoint, tmp_path):
    """evaluate on an s3:// run dir: the engine actors load the model from its URI (on a multi-node cluster a
    driver-local copy does not exist where the engine runs); the driver reads only the tokenizer."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    import pyarrow.fs as pafs

    from phiray.evals.benchmarks import Task
    from phiray.evals.generation import GenerationSettings, generate
    from phiray.rundir import RunDir

    bucket = s3_server.new_bucket("vllm-model")
    rd = RunDir(f"{bucket}/run", filesystem=None)
    pafs.copy_files(
        str(checkpoint),
        rd.path("finetune/model"),
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=rd.fs,
    )
    uri = rd.uri("finetune/model")
    assert uri == f"{bucket}/run/finetune/model" and RunDir(str(tmp_path)).uri("x") is None
    prompts = ["def add(a, b):\n", "class Stack:\n"]
    driver_copy = tmp_path / "tokenizer-only"  # tokenizer + config, no weights: the engine could not use it
    driver_copy.mkdir()
    for name in os.listdir(checkpoint):
        if "safetensors" not in name and not name.endswith(".bin"):
            shutil.copy(checkpoint / name, driver_copy / name)
    env = {**os.environ, **vllm_env(), **s3_server.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", _REMOTE_GENERATE, str(driver_copy), uri, json.dumps(prompts)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    remote = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("SAMPLES "))[8:])
    tasks = [Task(task_id=f"t/{i}", prompt=p, tests="", entry_point="f") for i, p in enumerate(prompts)]
    local = generate(
        str(checkpoint), tasks, GenerationSettings(n=1, temperature=0.0, max_new_tokens=12), engine="transformers"
    )
    tail = lambda rows: [{**r, "completion": r["completion"].rstrip("\ufffd")} for r in rows]  # noqa: E731
    assert tail(remote) == tail(local) and remote[0]["completion"]
