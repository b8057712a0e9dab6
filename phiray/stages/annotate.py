"""annotate: draw a seeded sample of the clean corpus and label its educational value (0-5).

``annotate.strategy=random`` (default) labels one seeded sample. ``active`` first embeds a seeded candidate
pool (``embed`` settings, on a Ray Data actor pool sized like filter's), labels a seed set that covers it
(``annotate.cold_start``), then in
``annotate.rounds`` rounds fits classify's forest on the labels so far and labels ``round_size`` pool
documents: those it is least sure of and those that cover the pool's unlabelled regions
(``annotate.uncertain_share``), spread over k-means clusters (``phiray.data.active``): the same budget
buys a better classifier. The ``round`` column says when each label was bought (0: the seed set).

``heuristic`` (offline default: documented rules) and ``learned`` (an ordinal model of the labelled set's dev
grades, :mod:`phiray.data.learned`; the tiny preset's) score on Ray Data tasks; ``llm`` sends phi-1's prompt through the
teacher client (``phiray.teacher``: bounded concurrency, retries, on-disk cache, so an interrupted run
resumes without repeating requests). Labels: ``annotate/labels`` (id, text, score, reason, annotator,
model); answers that cannot be parsed go to ``annotate/rejected``.

With ``teacher.kind=openai`` the random sample is labelled on the workers (:class:`LabelBatch` on a Ray
Data actor pool, ``annotate.actors``), never gathered on the driver: each actor's answers go to its own
shard of ``annotate/cache`` as they arrive, so a killed driver or node costs only its
last few answers (``teacher.cache_commit_every``, default its concurrency, or 0.2 s), and Ray Data redoes a lost batch from the cache (tests/cluster/test_resume.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pyarrow as pa

from phiray.config import RunConfig
from phiray.data import active, annotators, docio, learned
from phiray.data.scorers import embed_on_pool
from phiray.rundir import FsPath, Manifest, RunDir
from phiray.schemas import ANNOTATE_ACCOUNTING as _ACCOUNTING
from phiray.schemas import ANNOTATE_LABELS as _LABELS
from phiray.teacher import Request, make_teacher
from phiray.teacher.cache import RequestCache

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("phiray")


def _offline_batch(annotator: str):
    """The offline annotator's ``texts -> [(score, reason)]`` and its version (annotate/labels: model)."""
    if annotator == "learned":
        return learned.learned_batch, learned.version()
    return annotators.heuristic_batch, annotators.HEURISTIC_VERSION


def _offline(table: pa.Table, annotator: str) -> pa.Table:
    batch, version = _offline_batch(annotator)
    scored = batch(table["text"].to_pylist())
    return pa.table(
        {
            "id": table["id"],
            "text": table["text"].cast(pa.large_string()),
            "score": pa.array([s for s, _ in scored], pa.int64()),
            "reason": pa.array([r for _, r in scored], pa.string()),
            "annotator": pa.array([annotator] * table.num_rows, pa.string()),
            "model": pa.array([version] * table.num_rows, pa.string()),
            "round": pa.array([0] * table.num_rows, pa.int64()),
        },
        schema=_LABELS,
    )


def _check_llm_teacher(cfg: RunConfig) -> None:
    if cfg.teacher.kind not in ("openai", "vllm"):
        raise ValueError(
            "annotate.annotator=llm needs an LLM teacher: set teacher.kind=openai (and teacher.base_url) "
            "or teacher.kind=vllm (and teacher.model)"
        )


def _requests(rows: list[dict], cfg: RunConfig) -> list:
    return [
        Request(
            key=r["id"],
            messages=annotators.llm_messages(r["text"], cfg.annotate.max_chars),
            params={"temperature": 0.0, "max_tokens": 64},
            seed=cfg.run.seed,
        )
        for r in rows
    ]


def _label_row(row: dict, resp, cfg: RunConfig) -> dict:
    """A document + the judge's response -> its label row (``score`` None when the answer did not parse)."""
    score, reason = annotators.parse_llm_score(resp.text) if resp.ok else (None, f"request failed: {resp.error}")
    return {
        "id": row["id"],
        "text": row["text"],
        "score": score,
        "reason": reason,
        "annotator": "llm",
        "model": cfg.teacher.model,
        "round": row.get("round", 0),
    }


def _compact(cfg: RunConfig, cache_dir: "str | FsPath") -> None:
    if cfg.teacher.cache:  # no writer is left: merge the shards (a re-run reads one object)
        RequestCache(cache_dir).compact()


def _llm_label(rows: list[dict], cfg: RunConfig, cache_dir: "str | FsPath") -> tuple[list[dict], list[dict], dict]:
    """Label ``rows`` from this process (the active strategy's rounds, and the vLLM teacher, which runs its
    engines on Ray Data itself): (labels, rejected, teacher stats)."""
    _check_llm_teacher(cfg)
    teacher = make_teacher(cfg.teacher, cache_dir=cache_dir)
    responses = teacher.complete(_requests(rows, cfg))
    stats = dict(teacher.stats)
    teacher.close()
    _compact(cfg, cache_dir)
    labels, rejected = [], []
    for row, resp in zip(rows, responses):
        out = _label_row(row, resp, cfg)
        (labels if out["score"] is not None else rejected).append(out)
    return labels, rejected, stats


class LabelBatch:
    """Ray Data callable: a batch of sample rows (id, text) -> label rows plus each request's accounting
    (``_ACCOUNTING``). One teacher, so one HTTP client and one cache writer, per actor."""

    def __init__(self, cfg: RunConfig, cache_dir: "str | FsPath | None"):
        self.cfg, self.teacher = cfg, make_teacher(cfg.teacher, cache_dir=cache_dir)

    def __call__(self, table: pa.Table) -> pa.Table:
        rows = table.select(["id", "text"]).to_pylist()
        responses = self.teacher.complete(_requests(rows, self.cfg))
        out = [
            {
                **_label_row(row, resp, self.cfg),
                "cached": resp.cached,
                "attempts": resp.attempts,
                "tokens_in": resp.tokens_in,
                "tokens_out": resp.tokens_out,
                "error": resp.error,
            }
            for row, resp in zip(rows, responses)
        ]
        return pa.Table.from_pylist(out, schema=pa.unify_schemas([_LABELS, _ACCOUNTING]))


def _label_on_workers(sample, cfg: RunConfig, rd: RunDir) -> tuple:
    """The random sample labelled by :class:`LabelBatch` actors: (labels, rejected) datasets and the
    teacher stats summed from the rows (requests, sent, cache hits, tokens, failures by reason)."""
    import ray.data

    _check_llm_teacher(cfg)
    ac, cache_dir = cfg.annotate, llm_cache_dir(cfg, rd)
    answered = (
        sample.select_columns(["id", "text"])
        .map_batches(
            LabelBatch,
            fn_constructor_args=(cfg, cache_dir if cfg.teacher.cache else None),
            batch_size=ac.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=ac.actors),
            num_cpus=0.25,
        )
        .materialize()
    )  # an HTTP client waiting on answers: a quarter of a CPU is plenty
    _compact(cfg, cache_dir)
    # The sample's accounting columns (never its texts) meet on the driver: small, and the sample is not the corpus.
    acc = answered.select_columns(["cached", "attempts", "tokens_in", "tokens_out", "error"]).to_pandas()
    failures = acc["error"].dropna().value_counts().to_dict()
    stats = {
        "requests": len(acc),
        "cache_hits": int(acc["cached"].sum()),
        "sent": int((~acc["cached"]).sum()),
        "retries": int((acc["attempts"] - 1).clip(lower=0).sum()),
        "tokens_in": int(acc["tokens_in"].sum()),
        "tokens_out": int(acc["tokens_out"].sum()),
        "failures_by_reason": {str(k): int(v) for k, v in failures.items()},
    }
    price = cfg.teacher.prices.get(cfg.teacher.model)
    uncached = acc[~acc["cached"]]
    stats["cost_usd"] = (
        (
            float(uncached["tokens_in"].sum()) * price.input_per_million
            + float(uncached["tokens_out"].sum()) * price.output_per_million
        )
        / 1e6
        if price
        else 0.0
    )
    labels = answered.map_batches(_parsed, fn_kwargs={"keep": True}, batch_format="pyarrow", num_cpus=0.25)
    rejected = answered.map_batches(_parsed, fn_kwargs={"keep": False}, batch_format="pyarrow", num_cpus=0.25)
    return labels, rejected, stats


def _parsed(table: pa.Table, keep: bool) -> pa.Table:
    """The label rows whose answer parsed (``keep``), or those whose did not, in the labels' schema."""
    import pyarrow.compute as pc

    valid = pc.is_valid(table["score"])
    return table.filter(valid if keep else pc.invert(valid)).select(_LABELS.names)


def llm_cache_dir(cfg: RunConfig, rd: RunDir) -> "str | FsPath":
    """The LLM annotator's request cache: ``annotate.cache_dir``, else ``annotate/cache`` in the run dir
    (on its own file system, so every answer flushed survives a kill and every node sees it)."""
    return cfg.annotate.cache_dir or rd.fs_path("annotate", "cache")


def _embed_pool(docs, cfg: RunConfig) -> tuple[list[dict], "np.ndarray"]:
    """Rows (id, text) of the seeded candidate pool, sorted by id, and their embeddings (one row each).
    The pool (not the corpus) is gathered on the driver: the forest is refitted there every round."""
    import numpy as np

    ac = cfg.annotate
    pool = (
        docio.smallest_by_hash(docs, ["id"], ac.pool_size or 10 * ac.sample_size, salt=f"pool\0{cfg.run.seed}\0")
        .select_columns(["id", "text"])
        .materialize()
    )
    by_id = embed_on_pool(pool, cfg)
    rows = sorted(({"id": r["id"], "text": r["text"]} for r in pool.take_all()), key=lambda r: r["id"])
    return rows, np.asarray([by_id[r["id"]] for r in rows], np.float32)


def _active(docs, cfg: RunConfig, rd: RunDir) -> tuple[list[dict], list[dict], dict, list[dict]]:
    """Active labelling in rounds: (labels, rejected, teacher stats, per-round log)."""
    ac = cfg.annotate
    rows, x = _embed_pool(docs, cfg)
    labels, rejected, stats, rounds = [], [], {}, []
    current = {"round": 0}

    def label(indices) -> list[int | None]:
        picked = [{**rows[i], "round": current["round"]} for i in indices]
        if ac.annotator != "llm":
            batch, version = _offline_batch(ac.annotator)
            good = [
                {**r, "score": s, "reason": why, "annotator": ac.annotator, "model": version}
                for r, (s, why) in zip(picked, batch([r["text"] for r in picked]))
            ]
            bad = []
        else:
            good, bad, round_stats = _llm_label(picked, cfg, llm_cache_dir(cfg, rd))
            for k, v in round_stats.items():
                stats[k] = stats.get(k, 0) + v if isinstance(v, (int, float)) else v
        labels.extend(good)
        rejected.extend(bad)
        score_of = {r["id"]: r["score"] for r in good}
        return [score_of.get(r["id"]) for r in picked]

    def on_round(r: int, picks, scores) -> None:
        usable = [s for s in scores if s is not None]
        rounds.append(
            {
                "round": r,
                "labelled": len(picks),
                "unparsed": len(scores) - len(usable),
                "positives": sum(s >= cfg.classify.positive_min_score for s in usable),
            }
        )
        current["round"] = r + 1

    seed_size = ac.sample_size - ac.rounds * ac.per_round
    active.run_rounds(
        x,
        label,
        seed_size=seed_size,
        rounds=ac.rounds,
        round_size=ac.per_round,
        cc=cfg.classify,
        seed=cfg.run.seed,
        random_share=ac.random_share,
        uncertain_share=ac.uncertain_share,
        cold_start=ac.cold_start,
        on_round=on_round,
    )
    return labels, rejected, stats, [{**r, "pool": len(rows)} for r in rounds]


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Label a seeded sample of decontaminate/documents (or active-learning rounds of one): annotate/labels."""
    import ray.data

    ac = cfg.annotate
    docs = docio.read_docs(rd, "decontaminate", spread=True)
    n_corpus = docs.count()
    if ac.strategy != "active":
        # A seeded sample drawn by Ray tasks (the smallest hashes of seed + id): no id list on the driver.
        sample = docio.smallest_by_hash(docs, ["id"], ac.sample_size, salt=f"{cfg.run.seed}\0").materialize()
        n_sampled = sample.count()
    stats: dict = {}
    n_rejected, rounds = 0, []
    rd.remove("annotate", "rejected")
    if ac.strategy == "active":
        good, bad, stats, rounds = _active(docs, cfg, rd)
        labels = ray.data.from_arrow(pa.Table.from_pylist(good, schema=_LABELS))
        n_rejected, n_sampled = len(bad), len(good) + len(bad)
        if bad:
            rd.write_json("annotate/rejected/rejected.json", bad)
    elif ac.annotator != "llm":
        labels = sample.map_batches(_offline, fn_args=(ac.annotator,), batch_format="pyarrow", batch_size=64)
    elif cfg.teacher.kind == "openai":
        labels, rejected, stats = _label_on_workers(sample, cfg, rd)
        n_rejected = rejected.count()
        if n_rejected:
            docio.write_docs(rejected, rd, "annotate", "rejected")
    else:
        rows = sorted(({"id": r["id"], "text": r["text"]} for r in sample.take_all()), key=lambda r: r["id"])
        good, bad, stats = _llm_label(rows, cfg, llm_cache_dir(cfg, rd))
        labels = ray.data.from_arrow(pa.Table.from_pylist(good, schema=_LABELS))
        n_rejected = len(bad)
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
        metrics={
            "annotator": ac.annotator,
            "strategy": ac.strategy,
            "rounds": rounds,
            "score_histogram": histogram,
            "mean_score": mean,
            "teacher": stats,
        },
        headline={"labelled": len(scores), "mean_score": mean},
        outputs=["annotate/labels"] + (["annotate/cache"] if ac.annotator == "llm" and not ac.cache_dir else []),
    )
