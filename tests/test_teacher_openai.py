"""OpenAITeacher against a real OpenAI-wire-format HTTP server on 127.0.0.1 (tests/fake_openai.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI

from phiray.config import TeacherConfig
from phiray.teacher import Request, make_teacher
from phiray.teacher.openai_teacher import OpenAITeacher, parse_retry_after


def _cfg(server: FakeOpenAI, **kw) -> TeacherConfig:
    base = dict(
        kind="openai",
        base_url=server.base_url,
        model="fake-model",
        concurrency=8,
        max_retries=4,
        backoff_base_s=0.01,
        timeout_s=10,
    )
    return TeacherConfig(**{**base, **kw})


def _reqs(n: int, tag: str = "q") -> list[Request]:
    return [
        Request(key=f"{tag}{i}", messages=[{"role": "user", "content": f"{tag} question {i}"}], seed=i)
        for i in range(n)
    ]


def test_retry_after_on_429_is_honoured_and_counted():
    with FakeOpenAI(fail_first=2, fail_status=429, retry_after_s=0.3) as server:
        teacher = make_teacher(_cfg(server, backoff_base_s=0.001), None)
        t0 = time.perf_counter()
        [resp] = teacher.complete(_reqs(1))
        elapsed = time.perf_counter() - t0
    assert resp.ok and resp.attempts == 3
    assert elapsed >= 0.6  # two waits of Retry-After (0.3 s), far above the 1 ms backoff
    assert teacher.stats["retries_by_reason"] == {"rate_limited": 2}
    assert teacher.stats["retry_after_honoured"] == 2
    assert [e["status"] for e in server.log] == [429, 429, 200]
    gaps = [b["t"] - a["t"] for a, b in zip(server.log, server.log[1:])]
    assert all(g >= 0.29 for g in gaps)


def test_5xx_retried_with_backoff_then_succeeds():
    with FakeOpenAI(fail_first=1, fail_status=503, error_status=503, retry_after_s=None) as server:
        teacher = make_teacher(_cfg(server), None)
        responses = teacher.complete(_reqs(5))
    assert all(r.ok and r.attempts == 2 for r in responses)
    assert teacher.stats["retries_by_reason"] == {"server_error": 5}
    assert server.statuses() == {503: 5, 200: 5}


def test_retries_exhausted_is_a_counted_failure_not_a_crash():
    with FakeOpenAI(fail_first=100, fail_status=429, retry_after_s=0.01) as server:
        teacher = make_teacher(_cfg(server, max_retries=2), None)
        [resp] = teacher.complete(_reqs(1))
    assert not resp.ok and resp.error == "rate_limited" and resp.attempts == 3
    assert teacher.stats["failures_by_reason"] == {"rate_limited": 1}
    assert len(server.log) == 3


def test_malformed_bodies_are_counted_and_dropped(tmp_path: Path):
    with FakeOpenAI(malformed_rate=0.5, seed=3) as server:
        teacher = make_teacher(_cfg(server), str(tmp_path))
        responses = teacher.complete(_reqs(30))
    bad = [r for r in responses if not r.ok]
    assert bad and all(r.error == "malformed_body" and r.text is None for r in bad)
    assert teacher.stats["failures_by_reason"]["malformed_body"] == len(bad)
    assert len(bad) == sum(1 for e in server.log if e["outcome"] == "malformed")
    assert len(teacher.cache) == 30 - len(bad)  # failures are never cached


def test_cache_answers_a_rerun_without_sending_anything(tmp_path: Path):
    with FakeOpenAI() as server:
        first = make_teacher(_cfg(server), str(tmp_path)).complete(_reqs(10))
        sent = len(server.log)
        again = make_teacher(_cfg(server), str(tmp_path))  # a fresh process would do the same
        second = again.complete(_reqs(10) + _reqs(2, tag="new"))
    assert sent == 10 and len(server.log) == 12
    assert [r.text for r in second[:10]] == [r.text for r in first]
    assert all(r.cached for r in second[:10]) and not any(r.cached for r in second[10:])
    assert again.stats["cache_hits"] == 10


def test_identical_requests_in_a_batch_are_sent_once():
    with FakeOpenAI() as server:
        reqs = _reqs(3) + _reqs(3)
        responses = make_teacher(_cfg(server), None).complete(reqs)
    assert len(server.log) == 3 and [r.key for r in responses] == [r.key for r in reqs]


def test_completions_api_tokens_and_cost():
    prices = {"fake-model": {"input_per_million": 1000.0, "output_per_million": 2000.0}}
    with FakeOpenAI() as server:
        teacher = make_teacher(_cfg(server, api="completions", prices=prices), None)
        [resp] = teacher.complete([Request(key="a", prompt="one two three")])
    assert resp.ok and server.log[0]["path"].endswith("/v1/completions")
    assert resp.tokens_in > 0 and resp.tokens_out > 0
    expected = (resp.tokens_in * 1000 + resp.tokens_out * 2000) / 1e6
    assert teacher.stats["cost_usd"] == pytest.approx(expected)


def test_bounded_concurrency_overlaps_requests():
    with FakeOpenAI(latency_s=0.2) as server:
        teacher = make_teacher(_cfg(server, concurrency=10), None)
        t0 = time.perf_counter()
        responses = teacher.complete(_reqs(20))
        elapsed = time.perf_counter() - t0
    assert all(r.ok for r in responses)
    assert elapsed < 2.0  # sequential would take 4 s; 2 waves of 10 take ~0.4 s


def test_api_key_comes_from_the_env_and_is_never_written(tmp_path: Path, monkeypatch):
    secret = "sk-test-DO-NOT-STORE-12345"
    monkeypatch.setenv("PHIRAY_TEST_KEY", secret)
    seen = []
    with FakeOpenAI(responder=lambda body: "ok") as server:
        original = server.record
        teacher = make_teacher(_cfg(server, api_key_env="PHIRAY_TEST_KEY"), str(tmp_path))
        assert isinstance(teacher, OpenAITeacher)
        server.record = lambda entry: (seen.append(entry), original(entry))
        teacher.complete(_reqs(2))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text()
    assert secret not in repr(teacher.stats) and len(seen) == 2


def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({}) is None
    assert 0 <= parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) <= 0.0 + 1e-9


def test_connections_are_reused_from_one_call_to_the_next():
    with FakeOpenAI() as server:
        teacher = make_teacher(_cfg(server, concurrency=4), None)
        for call in range(3):
            assert all(r.ok for r in teacher.complete(_reqs(4, tag=f"c{call}")))
        teacher.close()
    assert len(server.log) == 12
    assert len({e["peer"] for e in server.log}) <= 4  # one pool of 4 connections, not 4 per call


def test_overlapping_calls_share_one_concurrency_bound():
    import threading

    with FakeOpenAI(latency_s=0.2) as server:
        teacher = make_teacher(_cfg(server, concurrency=4), None)
        out: dict[str, list] = {}
        threads = [
            threading.Thread(target=lambda tag=tag: out.__setitem__(tag, teacher.complete(_reqs(4, tag))))
            for tag in ("a", "b")
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    assert [r.key for r in out["a"]] == [f"a{i}" for i in range(4)] and all(r.ok for r in out["a"] + out["b"])
    # 8 requests through 4 slots: two waves of 0.2 s, never 8 at once.
    spans = [(e["t"], e["t"] + e["latency_s"]) for e in server.log]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most <= 4 and elapsed >= 0.4
    assert teacher.stats["requests"] == 8


def test_a_closed_teacher_can_be_used_again():
    with FakeOpenAI() as server:
        teacher = make_teacher(_cfg(server), None)
        assert teacher.complete(_reqs(1))[0].ok
        teacher.close()
        teacher.close()  # idempotent
        assert teacher.complete(_reqs(1, tag="again"))[0].ok
        teacher.close()


def test_the_test_server_spreads_latency_when_asked():
    with FakeOpenAI(latency_s=0.1, latency_jitter=0.5) as server:
        teacher = make_teacher(_cfg(server, concurrency=8), None)
        assert all(r.ok for r in teacher.complete(_reqs(16)))
        teacher.close()
    waits = [e["latency_s"] for e in server.log]
    assert min(waits) >= 0.05 and max(waits) < 0.25 and max(waits) - min(waits) > 0.03
