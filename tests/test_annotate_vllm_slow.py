"""Slow: the LLM annotator (phi-1's judge prompt) against a real OpenAI-compatible server, vLLM's, on
127.0.0.1 serving a small random checkpoint: every sampled document is one request, what the judge answers is
parsed into a 0-5 label or counted as unparsed, and a re-run is answered from the run's cache."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from serve_fixtures import free_port
from test_active import clean_corpus  # noqa: F401  (the fixture: 37 stdlib files as decontaminate/documents)
from vllm_fixtures import build_vllm_checkpoint, start_vllm_server, stop, wait_ready

from phiray.config import load_config

pytest.importorskip("vllm")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judge_server(tmp_path_factory):
    """vLLM's OpenAI server on a random 2-layer checkpoint with room for the judge prompt (1024 tokens)."""
    checkpoint = build_vllm_checkpoint(tmp_path_factory.mktemp("judge-ckpt"), context=1024)
    port, log = free_port(), tmp_path_factory.mktemp("judge-log") / "server.log"
    proc = start_vllm_server(checkpoint, port, "judge", log, max_model_len=1024)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log=log, model="judge")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


def test_llm_annotator_against_a_vllm_server(ray_session, clean_corpus, judge_server):  # noqa: F811
    from phiray.data.annotators import LLM_PROMPT
    from phiray.stages import annotate

    cfg = load_config(
        "tiny",
        overrides=[
            "annotate.annotator=llm",
            "classify.model=forest",
            "teacher.kind=openai",
            f"teacher.base_url={judge_server}",
            "teacher.model=judge",
            "teacher.max_tokens=12",
            "annotate.sample_size=10",
            "annotate.batch_size=4",
            "annotate.max_chars=300",
        ],
    )
    assert "educational value for a student whose goal is to learn basic coding concepts" in LLM_PROMPT  # phi-1
    first = annotate.run(cfg, clean_corpus)
    rows = {
        name: pq.read_table(clean_corpus.path("annotate", name)).to_pylist()
        if clean_corpus.exists("annotate", name)
        else []
        for name in ("labels", "rejected")
    }
    assert first.rows["sampled"] == 10 == len(rows["labels"]) + len(rows["rejected"])
    assert first.rows["labelled"] == len(rows["labels"]) and first.rows["unparsed"] == len(rows["rejected"])
    assert all(r["annotator"] == "llm" and r["model"] == "judge" for r in rows["labels"] + rows["rejected"])
    assert all(0 <= r["score"] <= 5 for r in rows["labels"])
    assert all(r["score"] is None and r["reason"] for r in rows["rejected"])  # a random model's answer: counted
    stats = first.metrics["teacher"]
    # One request per document, each carrying the judge prompt and 300 characters of code: many tokens in.
    assert (stats["requests"], stats["sent"], stats["cache_hits"]) == (10, 10, 0) and stats["tokens_in"] > 10 * 100
    again = annotate.run(cfg, clean_corpus)
    assert again.metrics["teacher"]["sent"] == 0 and again.metrics["teacher"]["cache_hits"] == 10
    assert again.rows == first.rows
