"""teacher.kind=vllm: an open-weights model on Ray Data LLM (a real vLLM engine on CPU), with the OpenAI
teacher's request cache, token accounting and seeded sampling (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vllm_fixtures import VLLM_ENV, tiny_hf_checkpoint

from phiray.config import TeacherConfig
from phiray.teacher import Request, make_teacher, request_hash
from phiray.teacher.vllm_teacher import VLLMTeacher, sampling_defaults, seed_of

PROMPTS = ["def add(a, b):\n", "import os\n\n", "class Stack:\n", "    return "]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    # Context 1024: synthesize's real prompts run to ~300 tokens of this small BPE vocabulary.
    return tiny_hf_checkpoint(tmp_path_factory.mktemp("teacher-ckpt"), n_ctx=1024)


@pytest.fixture
def vllm_env(monkeypatch):
    for name, value in VLLM_ENV.items():
        if name != "VLLM_ENABLE_V1_MULTIPROCESSING":  # the engine runs in a Ray actor: keep vLLM's default
            monkeypatch.setenv(name, value)


def _teacher_cfg(model: str, **extra) -> TeacherConfig:
    return TeacherConfig(
        kind="vllm",
        model=model,
        api="completions",
        temperature=1.0,
        top_p=0.95,
        max_tokens=12,
        vllm_max_model_len=1024,
        vllm_batch_size=4,
        **extra,
    )


def test_seed_comes_from_the_cache_key():
    cfg = _teacher_cfg("m")
    a, b = Request(prompt="x", seed=1), Request(prompt="x", seed=2)
    ka, kb = (request_hash(cfg.model, cfg.api, r, sampling_defaults(cfg)) for r in (a, b))
    assert ka != kb and seed_of(ka) != seed_of(kb) and seed_of(ka) == seed_of(ka) and 0 <= seed_of(ka) < 2**32
    assert isinstance(make_teacher(cfg), VLLMTeacher)


def test_vllm_teacher_on_ray_data_caches_counts_tokens_and_resumes(ray_session, vllm_env, checkpoint, tmp_path):
    from transformers import AutoTokenizer

    cache_dir = str(tmp_path / "cache")
    requests = [Request(key=f"r{i}", prompt=p, seed=i) for i, p in enumerate(PROMPTS)]
    # The same request twice in one batch (another key), and a prompt longer than the engine's context.
    repeat = Request(key="again", prompt=PROMPTS[0], seed=0)
    too_long = Request(key="long", prompt="def f(x):\n    return x + 1\n" * 400, seed=9)
    teacher = make_teacher(_teacher_cfg(checkpoint), cache_dir=cache_dir)
    # One engine start; r3 is left for the "resumed" call.
    answers = teacher.complete([*requests[:3], repeat, too_long])
    first, again_in_batch, refused = answers[:3], answers[3], answers[4]
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert [r.key for r in first] == ["r0", "r1", "r2"] and all(r.ok and r.text for r in first)
    assert [r.tokens_in for r in first] == [len(tokenizer(p)["input_ids"]) for p in PROMPTS[:3]]
    assert all(1 <= r.tokens_out <= 12 and not r.cached for r in first)
    # The repeat never reached the engine: it is answered from its first copy's stored answer.
    assert again_in_batch.key == "again" and again_in_batch.text == first[0].text and again_in_batch.cached
    # The over-long prompt is a counted failure, not a crash, and is not cached (a rerun tries it again).
    assert refused.key == "long" and not refused.ok and refused.error == "prompt_too_long"
    assert teacher.stats["sent"] == 4 and teacher.stats["cache_hits"] == 1
    assert teacher.stats["failures_by_reason"] == {"prompt_too_long": 1}
    assert teacher.stats["tokens_out"] == sum(r.tokens_out for r in first)
    lines = [json.loads(line) for f in Path(cache_dir).glob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(lines) == 3  # one cache line per engine answer, written as answers leave the engine
    # A fresh teacher on the same cache (a rerun): the cached answers never reach the engine.
    again = make_teacher(_teacher_cfg(checkpoint), cache_dir=cache_dir).complete(requests[:3])
    assert [r.text for r in again] == [r.text for r in first] and all(r.cached for r in again)
    assert len([1 for f in Path(cache_dir).glob("*.jsonl") for _ in f.read_text().splitlines()]) == 3


def _cache_hashes(cache_dir: Path) -> list[str]:
    """Every whole answer line in the cache (a line torn by a kill is not an answer)."""
    hashes = []
    for shard in cache_dir.glob("*.jsonl"):
        for line in shard.read_text().splitlines():
            try:
                hashes.append(json.loads(line)["hash"])
            except (ValueError, KeyError):
                pass
    return hashes


def _vllm_args(checkpoint: str, *extra: str) -> list[str]:
    return [
        "teacher.kind=vllm",
        f"teacher.model={checkpoint}",
        "teacher.api=completions",
        "teacher.max_tokens=48",
        "teacher.vllm_max_model_len=1024",
        "teacher.vllm_batch_size=4",
        "synthesize.verify=false",
        *extra,
    ]


@pytest.mark.slow
def test_tiny_synthesize_with_the_vllm_teacher_completes(ray_session, vllm_env, checkpoint, tmp_path):
    from synthesize_fixtures import run_synthesize, tiny_cfg

    cfg = tiny_cfg(*_vllm_args(checkpoint, "synthesize.n_textbooks=6", "synthesize.n_exercises=10"))
    manifest = run_synthesize(tmp_path / "run", cfg)
    rows, m = manifest.rows, manifest.metrics
    assert rows["planned"] == 16 == rows["textbooks"] + rows["exercises"] + rows["heldout"] + rows["rejected"]
    assert m["teacher"] == "vllm" and m["sent"] == 16 and m["cache_hits"] == 0 and m["tokens_out"] > 0
    assert len(_cache_hashes(tmp_path / "run" / "synthesize" / "cache")) == 16


@pytest.mark.slow
def test_killed_vllm_synthesize_resumes_without_repeating_a_request(vllm_env, checkpoint, tmp_path):
    import os
    import signal
    import time

    from synthesize_fixtures import spawn_synthesize

    from phiray.rundir import RunDir

    run_dir, planned = tmp_path / "run", 160
    cache = run_dir / "synthesize" / "cache"
    args = _vllm_args(
        checkpoint,
        "teacher.max_tokens=96",
        "teacher.vllm_batch_size=2",
        "synthesize.n_textbooks=60",
        "synthesize.n_exercises=100",
    )
    proc = spawn_synthesize(run_dir, *args, log_path=tmp_path / "first.log")
    deadline = time.time() + 900
    while len(_cache_hashes(cache)) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, Ray's local cluster, the engine: all at once
    proc.wait()
    before, settled = _cache_hashes(cache), time.time()
    while time.time() - settled < 5:  # an actor may still be writing for a moment after its driver died
        time.sleep(0.5)
        if len(now := _cache_hashes(cache)) != len(before):
            before, settled = now, time.time()
    assert 4 <= len(before) < planned, "the run finished before the kill: make it longer"
    assert not (run_dir / "synthesize" / "_manifest.json").exists()
    proc = spawn_synthesize(run_dir, *args, log_path=tmp_path / "second.log")
    assert proc.wait(timeout=1200) == 0, (tmp_path / "second.log").read_text()[-3000:]
    after = _cache_hashes(cache)
    assert len(after) == len(set(after)) == planned  # every request answered by the engine exactly once
    m = RunDir(run_dir).read_manifest("synthesize").metrics
    assert m["cache_hits"] == len(before) and m["sent"] == planned - len(before)
