"""The synthesize stage against a real OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py):
retries, malformed answers counted and dropped, and a run SIGKILLed mid-way then re-run that re-sends
nothing already answered and ends with every sample (the server's request log is the proof)."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI, default_responder
from synthesize_fixtures import run_synthesize, spawn_synthesize, tiny_cfg

from phiray.rundir import RunDir


def _openai(server: FakeOpenAI, *extra: str) -> list[str]:
    return [
        "teacher.kind=openai",
        f"teacher.base_url={server.base_url}",
        "teacher.model=fake-model",
        "teacher.backoff_base_s=0.01",
        *extra,
    ]


def test_stage_retries_and_drops_malformed_answers(tmp_path: Path, ray_session):
    calls = Counter()

    def responder(body):  # every 7th distinct request gets prose with no code at all
        calls["n"] += 1
        return "I would rather not write code today." if calls["n"] % 7 == 0 else default_responder(body)

    with FakeOpenAI(
        rate_limit_rate=0.15, error_rate=0.1, malformed_rate=0.1, retry_after_s=0.01, seed=5, responder=responder
    ) as server:
        cfg = tiny_cfg(
            *_openai(server, "teacher.concurrency=8", "teacher.max_retries=8"),
            "synthesize.n_textbooks=20",
            "synthesize.n_exercises=60",
        )
        manifest = run_synthesize(tmp_path, cfg)
        statuses = server.statuses()
    m = manifest.metrics
    assert statuses[429] > 0 and statuses[500] > 0 and m["retries"] > 0
    reasons = m["failures_by_reason"]
    malformed = sum(1 for e in server.log if e["outcome"] == "malformed")
    assert reasons.get("malformed_body", 0) == malformed > 0
    assert reasons.get("no_code", 0) > 0
    rows = manifest.rows
    assert (
        rows["textbooks"] + rows["exercises"] + rows["validation"] + rows["heldout"] + rows["rejected"]
        == rows["planned"]
        == 80
    )
    assert m["requests"] == 80 and m["tokens_in"] > 0 and m["tokens_out"] > 0
    assert rows["exercises"] > 0 and rows["textbooks"] > 0


def test_rerun_answers_everything_from_the_cache(tmp_path: Path, ray_session):
    with FakeOpenAI() as server:
        cfg = tiny_cfg(
            *_openai(server), "synthesize.n_textbooks=8", "synthesize.n_exercises=16", "synthesize.verify=false"
        )
        first = run_synthesize(tmp_path, cfg)
        sent = len(server.log)
        second = run_synthesize(tmp_path, cfg)
        assert len(server.log) == sent == 24  # the re-run sent nothing
    assert second.metrics["cache_hits"] == 24 and second.metrics["tokens_in"] == 0
    assert second.metrics["cached_tokens_in"] == first.metrics["tokens_in"]
    assert second.rows == first.rows


def _answered(log: list[dict]) -> Counter:
    return Counter(e["hash"] for e in log if e["status"] == 200 and e["outcome"] == "ok")


@pytest.mark.slow  # two real `phiray synthesize` processes, each starting its own Ray cluster
def test_killed_run_resumes_without_repeating_a_request(tmp_path: Path):
    run_dir = tmp_path / "run"
    n_text, n_ex = 40, 80
    with FakeOpenAI(latency_s=0.1, log_path=str(tmp_path / "requests.jsonl")) as server:
        args = (
            *_openai(server, "teacher.concurrency=4"),
            f"synthesize.n_textbooks={n_text}",
            f"synthesize.n_exercises={n_ex}",
            "synthesize.batch_size=4",
        )
        proc = spawn_synthesize(run_dir, *args, log_path=tmp_path / "first.log")
        deadline = time.time() + 240
        while len(_answered(server.log)) < 30 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, Ray's local cluster and its actors: all at once
        proc.wait()
        time.sleep(1.0)
        first = list(server.log)
        time.sleep(1.0)
        assert len(server.log) == len(first), "requests still arriving after the kill"
        answered_before = _answered(first)
        assert 30 <= sum(answered_before.values()) < n_text + n_ex
        assert not (run_dir / "synthesize" / "_manifest.json").exists()

        proc = spawn_synthesize(run_dir, *args, log_path=tmp_path / "second.log")
        assert proc.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-3000:]
        second = server.log[len(first) :]
    resent = [e["hash"] for e in second if e["hash"] in answered_before]
    assert resent == [], f"{len(resent)} already-answered requests were sent again"
    answered_all = _answered(server.log)
    assert len(answered_all) == n_text + n_ex and max(answered_all.values()) == 1  # each answered exactly once
    manifest = RunDir(run_dir).read_manifest("synthesize")
    assert manifest.metrics["cache_hits"] >= sum(answered_before.values())
    assert manifest.metrics["cache_hits"] + sum(1 for e in second if e["outcome"] == "ok") == n_text + n_ex
    rows = manifest.rows
    assert (
        rows["textbooks"] + rows["exercises"] + rows["validation"] + rows["heldout"] + rows["rejected"] == n_text + n_ex
    )
    assert set(manifest.metrics["failures_by_reason"]) <= {"near_duplicate"}  # every sample came back
