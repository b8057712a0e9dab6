"""The JSONL request cache: per-process shards, flushed per answer, torn lines tolerated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from phiray.teacher.cache import RequestCache


def test_put_is_on_disk_immediately_and_reloads(tmp_path: Path):
    cache = RequestCache(tmp_path)
    cache.put("h1", {"text": "a"})
    other = RequestCache(tmp_path)  # another process's view, without close()
    assert other.get("h1")["text"] == "a"
    cache.put("h2", {"text": "b"})
    other.reload()
    assert "h2" in other and len(other) == 2


def test_torn_last_line_after_a_kill_is_skipped(tmp_path: Path):
    cache = RequestCache(tmp_path)
    cache.put("good", {"text": "kept"})
    shard = next(tmp_path.glob("*.jsonl"))
    with shard.open("a") as fh:
        fh.write('{"hash": "torn", "text": "hal')  # no newline: the writer died mid-line
    fresh = RequestCache(tmp_path)
    assert "good" in fresh and "torn" not in fresh
    fresh.put("after", {"text": "x"})  # a new shard: the torn line never corrupts new entries
    assert "after" in RequestCache(tmp_path)


def test_answers_survive_sigkill_of_the_writer(tmp_path: Path):
    code = (
        "import os, signal, sys\nfrom phiray.teacher.cache import RequestCache\n"
        "c = RequestCache(sys.argv[1])\nfor i in range(50):\n    c.put(f'h{i}', {'text': str(i)})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)])
    assert proc.returncode == -9
    cache = RequestCache(tmp_path)
    assert len(cache) == 50 and cache.get("h49")["text"] == "49"


def test_answers_stay_on_disk_only_the_index_is_in_memory(tmp_path: Path):
    writer = RequestCache(tmp_path)
    big = "x" * 20_000
    for i in range(200):
        writer.put(f"h{i}", {"text": f"{i}:{big}", "tokens_out": i})
    writer.close()
    writer.put("late", {"text": "after close: a new shard"})
    reader = RequestCache(tmp_path)
    assert len(reader) == 201 and len(list(tmp_path.glob("*.jsonl"))) == 2
    assert reader.get("h137") == {"hash": "h137", "text": f"137:{big}", "tokens_out": 137}
    assert reader.get("late")["text"].startswith("after close") and reader.get("missing") is None
    # Memory: a few tuples per entry, not the 4 MB of answers.
    assert sum(len(str(v)) for v in reader._index.values()) < 200 * 100
