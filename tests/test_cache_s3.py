"""Request caches in an ``s3://`` run dir, against a real S3 HTTP server on 127.0.0.1 (moto)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from phiray.config import load_config
from phiray.rundir import RunDir
from phiray.teacher.cache import RequestCache

WRITER = """
import os, signal, sys
from phiray.teacher.cache import RequestCache
cache = RequestCache(sys.argv[1], flush_every=10_000, flush_interval_s=3600)
for i in range(int(sys.argv[2])):
    cache.put(f"{sys.argv[3]}{i}", {"text": str(i)})
    if i % 10 == 9:
        cache.flush()  # what the teacher does after each batch
os.kill(os.getpid(), signal.SIGKILL)
"""


def _writer(uri: str, n: int, prefix: str) -> int:
    return subprocess.run([sys.executable, "-c", WRITER, uri, str(n), prefix], env=dict(os.environ)).returncode


def test_killed_writers_keep_every_flushed_answer_and_readers_see_the_union(s3_server):
    uri = f"{s3_server.new_bucket()}/run/synthesize/cache"
    # Two writers (two processes: two nodes' actors), each killed with answers still buffered.
    assert _writer(uri, 25, "a") == -9 and _writer(uri, 37, "b") == -9
    reader = RequestCache(uri)
    assert len(reader) == 20 + 30  # each lost only its unflushed tail (5 and 7 answers)
    assert reader.get("a19")["text"] == "19" and reader.get("b29")["text"] == "29" and "a20" not in reader
    assert len(reader._shards()) == 2 + 3  # one immutable object per flush, never a rewrite


def test_flusher_thread_puts_answers_within_the_interval(s3_server):
    uri = f"{s3_server.new_bucket()}/cache"
    writer = RequestCache(uri, flush_interval_s=0.2)
    for i in range(5):
        writer.put(f"h{i}", {"text": str(i)})
    assert "h4" in writer and writer.get("h4")["text"] == "4"  # this writer sees its buffered answers
    deadline = time.monotonic() + 10
    while len(RequestCache(uri)) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(RequestCache(uri)) == 5 and writer.flushes == 1  # one put carried all five
    writer.close()


def test_compaction_merges_shards_into_one_object_without_losing_an_answer(s3_server):
    uri = f"{s3_server.new_bucket()}/cache"
    writers = [RequestCache(uri) for _ in range(3)]
    for i in range(30):
        writers[i % 3].put(f"h{i}", {"text": f"t{i}"})
        writers[i % 3].flush()
    writers[1].put("h0", {"text": "t0"})  # a duplicate answer across writers is stored once after merging
    for w in writers:
        w.close()
    reader = RequestCache(uri)
    assert len(reader) == 30 and len(reader._shards()) == 31
    assert reader.compact() == 30
    fresh = RequestCache(uri)
    assert len(fresh._shards()) == 1 and len(fresh) == 30
    assert all(fresh.get(f"h{i}")["text"] == f"t{i}" for i in range(30))


def test_llm_annotator_cache_lives_in_the_s3_run_dir(s3_server, tmp_path):
    from fake_openai import FakeOpenAI

    from phiray.stages.annotate import _llm_label

    rd = RunDir(f"{s3_server.new_bucket()}/runs/x")
    rows = [{"id": f"d{i}", "text": f'def f{i}():\n    """Doc {i}."""\n'} for i in range(8)]
    with FakeOpenAI(responder=lambda body: "Score: 3\nReason: fine.") as server:
        cfg = load_config(
            "tiny",
            overrides=[
                "teacher.kind=openai",
                f"teacher.base_url={server.base_url}",
                "annotate.annotator=llm",
                "classify.model=forest",
            ],
        )
        good, _, _ = _llm_label(rows, cfg, rd.fs_path("annotate", "cache"))
        assert len(good) == 8 and len(server.answered()) == 8
        assert len(rd.listdir("annotate", "cache")) == 1  # compacted on success
        # Another process (another node) finds every answer there: nothing is sent again.
        again, _, stats = _llm_label(rows, cfg, rd.fs_path("annotate", "cache"))
        assert again == good and len(server.answered()) == 8 and stats["cache_hits"] == 8
