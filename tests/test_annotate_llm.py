"""annotate with the LLM judge on the workers (``annotate.annotator=llm``, ``teacher.kind=openai``): the
sample is labelled by Ray Data actors against a real OpenAI-wire server, never gathered on the driver; a
re-run is served from the cache; a labelling actor SIGKILLed mid-batch is restarted by Ray Data and
asks for nothing the cache already holds."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fake_openai import FakeOpenAI, body_hash, cache_key
from test_active import clean_corpus  # noqa: F401  (the fixture: 37 stdlib files as decontaminate/documents)

from phiray.config import load_config
from phiray.rundir import RunDir
from phiray.teacher.cache import RequestCache


class Judge:
    """Scores by a hash of the prompt; one prompt in five gets an answer with no score. Remembers the
    cache key of every request it answers (by the body hash the server logs)."""

    def __init__(self):
        self.keys: dict[str, str] = {}

    def __call__(self, body: dict) -> str:
        self.keys[body_hash(body)] = cache_key(body)
        digest = int(hashlib.sha256(body["messages"][-1]["content"].encode()).hexdigest(), 16)
        return "no idea" if digest % 5 == 0 else f"Score: {digest % 6}\nReason: by hash."


def _config(server: FakeOpenAI, *extra: str):
    return load_config(
        "tiny",
        overrides=[
            "annotate.annotator=llm",
            "classify.model=forest",
            "teacher.kind=openai",
            f"teacher.base_url={server.base_url}",
            "annotate.sample_size=20",
            "annotate.batch_size=4",
            *extra,
        ],
    )


def _rows(rd: RunDir, name: str) -> list[dict]:
    if not rd.exists("annotate", name):
        return []
    return sorted(pq.read_table(rd.path("annotate", name)).to_pylist(), key=lambda r: r["id"])


def test_llm_labels_come_from_actors_and_a_rerun_from_the_cache(ray_session, clean_corpus):  # noqa: F811
    from phiray.stages import annotate

    judge = Judge()
    with FakeOpenAI(responder=judge) as server:
        cfg = _config(server)
        first = annotate.run(cfg, clean_corpus)
        labels, rejected = _rows(clean_corpus, "labels"), _rows(clean_corpus, "rejected")
        assert len(server.answered()) == 20 == len(set(server.answered()))
        assert len(labels) + len(rejected) == 20 == first.rows["sampled"] and rejected
        assert first.rows == {"corpus": 37, "sampled": 20, "labelled": len(labels), "unparsed": len(rejected)}
        assert all(r["annotator"] == "llm" and r["model"] == cfg.teacher.model for r in labels + rejected)
        assert all(r["score"] is None and r["reason"].startswith("unparseable") for r in rejected)
        stats = first.metrics["teacher"]
        assert (stats["requests"], stats["sent"], stats["cache_hits"]) == (20, 20, 0) and stats["tokens_in"] > 0

        again = annotate.run(cfg, clean_corpus)
        assert len(server.answered()) == 20  # nothing sent again
        assert again.metrics["teacher"]["cache_hits"] == 20 and again.metrics["teacher"]["sent"] == 0
        assert _rows(clean_corpus, "labels") == labels and _rows(clean_corpus, "rejected") == rejected
        # The driver-side path (active rounds, the vLLM teacher) labels the same documents the same way.
        rows = [{"id": r["id"], "text": r["text"]} for r in labels + rejected]
        good, bad, _ = annotate._llm_label(rows, cfg, clean_corpus.fs_path("annotate", "cache"))
        assert sorted(good, key=lambda r: r["id"]) == labels and len(server.answered()) == 20
        assert len(RequestCache(clean_corpus.fs_path("annotate", "cache"))._shards()) == 1  # compacted


def _actor_pid(class_part: str, timeout_s: float = 60.0) -> int:
    """The worker process of the live actor whose class names ``class_part``: Ray titles it
    ``ray::MapWorker(MapBatches(<class>))...`` (the session cluster runs no dashboard for the state API)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and f"({class_part})".encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no live {class_part} actor")


@pytest.mark.slow
def test_a_killed_labelling_actor_repeats_no_stored_request(ray_session, clean_corpus, tmp_path):  # noqa: F811
    """SIGKILL the labelling actor once 6 of 20 answers are in: Ray Data restarts it and redoes its batch;
    no answer the cache held at the kill is asked for again, and the labels equal an uninterrupted run's."""
    from phiray.stages import annotate

    judge = Judge()
    with FakeOpenAI(responder=judge, latency_s=0.15) as server:
        cfg = _config(server, "teacher.concurrency=1")
        done: list[BaseException | None] = []
        worker = threading.Thread(target=lambda: done.append(_run_or_error(annotate.run, cfg, clean_corpus)))
        worker.start()
        while len(server.answered()) < 6:
            assert worker.is_alive(), done
            time.sleep(0.02)
        os.kill(_actor_pid("LabelBatch"), signal.SIGKILL)
        kill_mark = len(server.log)
        at_kill = {e["hash"] for e in RequestCache(clean_corpus.fs_path("annotate", "cache")).entries()}
        worker.join(timeout=300)
        assert done == [None]
        after = [judge.keys[e["hash"]] for e in server.log[kill_mark:] if e["status"] == 200]
        assert at_kill and not [k for k in after if k in at_kill]
        final = {e["hash"] for e in RequestCache(clean_corpus.fs_path("annotate", "cache")).entries()}
        assert set(judge.keys.values()) == final and len(final) == 20  # the log's keys are the cache's
        interrupted = _rows(clean_corpus, "labels"), _rows(clean_corpus, "rejected")
    with FakeOpenAI(responder=Judge()) as fresh:
        cfg = _config(fresh, f"annotate.cache_dir={tmp_path / 'fresh-cache'}")
        annotate.run(cfg, clean_corpus)
        assert (_rows(clean_corpus, "labels"), _rows(clean_corpus, "rejected")) == interrupted


def _run_or_error(fn, *args) -> BaseException | None:
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001  (reported by the test's thread)
        return err
    return None
