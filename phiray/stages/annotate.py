"""annotate: draw a seeded sample of the clean corpus and label its educational value (0-5).

``heuristic`` (offline default) scores on Ray Data tasks; ``llm`` sends phi-1's prompt through the
teacher client (``phiray.teacher``: bounded concurrency, retries, on-disk cache, so an interrupted run
resumes without repeating requests). Labels: ``annotate/labels`` (id, text, score, reason, annotator,
model); answers that cannot be parsed go to ``annotate/rejected``.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from phiray.config import RunConfig
from phiray.data import annotators, docio
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")
_LABELS = pa.schema([("id", pa.string()), ("text", pa.large_string()), ("score", pa.int64()),
                     ("reason", pa.string()), ("annotator", pa.string()), ("model", pa.string())])


def _heuristic(table: pa.Table) -> pa.Table:
    scored = annotators.heuristic_batch(table["text"].to_pylist())
    return pa.table({"id": table["id"], "text": table["text"].cast(pa.large_string()),
                     "score": pa.array([s for s, _ in scored], pa.int64()),
                     "reason": pa.array([r for _, r in scored], pa.string()),
                     "annotator": pa.array(["heuristic"] * table.num_rows, pa.string()),
                     "model": pa.array(["heuristic-v1"] * table.num_rows, pa.string())}, schema=_LABELS)


def _llm_label(rows: list[dict], cfg: RunConfig, cache_dir: str) -> tuple[list[dict], list[dict], dict]:
    from phiray.teacher import Request, make_teacher

    if cfg.teacher.kind != "openai":
        raise ValueError("annotate.annotator=llm needs an LLM teacher: set teacher.kind=openai (and teacher.base_url)")
    teacher = make_teacher(cfg.teacher, cache_dir=cache_dir)
    requests = [Request(key=r["id"], messages=annotators.llm_messages(r["text"], cfg.annotate.max_chars),
                        params={"temperature": 0.0, "max_tokens": 64}, seed=cfg.run.seed) for r in rows]
    labels, rejected = [], []
    for row, resp in zip(rows, teacher.complete(requests)):
        score, reason = annotators.parse_llm_score(resp.text) if resp.ok else (None, f"request failed: {resp.error}")
        out = {"id": row["id"], "text": row["text"], "score": score, "reason": reason, "annotator": "llm",
               "model": cfg.teacher.model}
        (labels if score is not None else rejected).append(out)
    return labels, rejected, dict(teacher.stats)


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    import ray.data

    ac = cfg.annotate
    docs = docio.read_docs(rd, "decontaminate", spread=True)
    # A seeded sample drawn by Ray tasks (the smallest hashes of seed + id): no id list on the driver.
    sample = docio.smallest_by_hash(docs, ["id"], ac.sample_size, salt=f"{cfg.run.seed}\0").materialize()
    n_corpus, n_sampled = docs.count(), sample.count()
    stats: dict = {}
    n_rejected = 0
    if ac.annotator == "heuristic":
        labels = sample.map_batches(_heuristic, batch_format="pyarrow", batch_size=64)
    else:
        rows = sorted(({"id": r["id"], "text": r["text"]} for r in sample.take_all()), key=lambda r: r["id"])
        with rd.local_dir("annotate/cache") if not ac.cache_dir else _fixed(ac.cache_dir) as cache_dir:
            good, bad, stats = _llm_label(rows, cfg, cache_dir)
        labels = ray.data.from_arrow(pa.Table.from_pylist(good, schema=_LABELS))
        n_rejected = len(bad)
        rd.remove("annotate", "rejected")
        if bad:
            rd.write_json("annotate/rejected/rejected.json", bad)
    labels = labels.materialize()
    docio.write_docs(labels, rd, "annotate", "labels")
    scores = [s for b in labels.iter_batches(batch_format="pyarrow", batch_size=None) for s in b["score"].to_pylist()]
    histogram = {str(k): scores.count(k) for k in range(6)}
    mean = round(sum(scores) / len(scores), 3) if scores else 0.0
    log.info("annotate: %d labels (%s), score histogram %s", len(scores), ac.annotator, histogram)
    return Manifest(
        stage="annotate",
        rows={"corpus": n_corpus, "sampled": n_sampled, "labelled": len(scores), "unparsed": n_rejected},
        metrics={"annotator": ac.annotator, "score_histogram": histogram, "mean_score": mean, "teacher": stats},
        headline={"labelled": len(scores), "mean_score": mean},
        outputs=["annotate/labels"] + (["annotate/cache"] if ac.annotator == "llm" and not ac.cache_dir else []),
    )


class _fixed:
    """Context manager yielding a fixed local directory (a user-chosen cache location)."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> str:
        import os

        os.makedirs(self.path, exist_ok=True)
        return self.path

    def __exit__(self, *exc) -> None:
        return None
