"""filter: score every clean document on a Ray Data actor pool and keep the best.

``map_batches(QualityScorer, compute=ActorPoolStrategy(size=filter.actors))``: each actor loads the
embedder and the forest once; actors reserve fractional CPUs (``filter.num_cpus_per_actor``) so the read
tasks still get scheduled on a small machine (see RAY_ON_CPU.md), and ``num_gpus_per_actor`` on GPUs.
Selection is by ``threshold`` or ``top_fraction`` (a quantile of all scores). Kept documents go to
``filter/documents`` and the rest to ``filter/rejected`` (reason ``low_score``), both with ``score``.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from phiray.config import RunConfig
from phiray.data import docio
from phiray.data.scorers import QualityScorer
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")


def score_dataset(ds, cfg: RunConfig, model_bytes: bytes, scorer: type = QualityScorer):
    """The scoring pipeline (lazy): documents -> documents + score, on the configured actor pool
    (``scorer``: a QualityScorer-compatible class, e.g. an instrumented one in benchmarks)."""
    import ray.data

    fc = cfg.filter
    # One batch per block: every actor of the pool gets work (a fused read would feed them per file).
    return ds.repartition(target_num_rows_per_block=fc.batch_size).map_batches(
        scorer, fn_constructor_args=(cfg.embed.model_dump(mode="json"), model_bytes, fc.keep_embeddings),
        batch_size=fc.batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=fc.actors),
        num_cpus=fc.num_cpus_per_actor, num_gpus=fc.num_gpus_per_actor or None)


def cutoff(scores: np.ndarray, threshold: float | None, top_fraction: float | None) -> float:
    """Score from which a document is kept: the threshold, or the quantile keeping ``top_fraction``."""
    if top_fraction is not None:
        if len(scores) == 0:
            return 1.0
        k = max(1, int(round(top_fraction * len(scores))))
        return float(np.sort(scores)[::-1][k - 1])
    if threshold is None:
        raise ValueError("filter: set filter.threshold or filter.top_fraction")
    return float(threshold)


HISTOGRAM_BINS = 100_000  # scores are probabilities in [0, 1]: quantiles to 1e-5 from a fixed-size table


def dataset_cutoff(scored, threshold: float | None, top_fraction: float | None) -> float:
    """``cutoff`` for a (materialised) scored dataset, computed by Ray: the top-fraction cut is the
    smallest score among the k largest (a distributed sort; one number reaches the driver)."""
    if top_fraction is None:
        return cutoff(np.zeros(0), threshold, None)
    n = scored.count()
    if n == 0:
        return 1.0
    k = max(1, int(round(top_fraction * n)))
    return float(scored.select_columns(["score"]).sort("score", descending=True).limit(k).min("score"))


def score_histogram(scored) -> np.ndarray:
    """Counts of scores in ``HISTOGRAM_BINS`` equal bins of [0, 1]: per-block counts of the occupied bins,
    summed by a distributed groupby (at most ``HISTOGRAM_BINS`` rows reach the driver)."""

    def _block(table: pa.Table) -> pa.Table:
        bins = np.clip(np.floor(table["score"].to_numpy(zero_copy_only=False) * HISTOGRAM_BINS), 0, HISTOGRAM_BINS - 1)
        values, counts = np.unique(bins.astype(np.int64), return_counts=True)
        return pa.table({"bin": values, "n": counts.astype(np.int64)})

    rows = (scored.select_columns(["score"]).map_batches(_block, batch_format="pyarrow", batch_size=None)
            .groupby("bin").sum("n").take_all())
    hist = np.zeros(HISTOGRAM_BINS, np.int64)
    for r in rows:
        hist[int(r["bin"])] = int(r["sum(n)"])
    return hist


def _quantile(histogram: np.ndarray, q: float) -> float:
    """The q-quantile (lower bin edge, within 1/HISTOGRAM_BINS) of a score histogram."""
    cumulative = np.cumsum(histogram)
    return float(np.searchsorted(cumulative, q * cumulative[-1]) / HISTOGRAM_BINS)


def _mark(table: pa.Table, cut: float) -> pa.Table:
    kept = pc.greater_equal(table["score"], cut)
    table = table.append_column("kept", kept)
    return table.append_column("reason", pc.if_else(kept, "", "low_score"))


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    with rd.local_dir("classify/model", upload=False) as d:
        with open(f"{d}/forest.joblib", "rb") as fh:
            model_bytes = fh.read()
    docs = docio.read_docs(rd, "decontaminate", spread=True)
    # Scored once (the expensive pass) and kept in the object store (Ray spills to disk when it must):
    # a top-fraction cut needs every score before any document can be routed.
    scored = score_dataset(docs, cfg, model_bytes).materialize()
    n_in = scored.count()
    cut = dataset_cutoff(scored, cfg.filter.threshold, cfg.filter.top_fraction)
    marked = scored.map_batches(_mark, fn_kwargs={"cut": cut}, batch_format="pyarrow")
    kept, rejected = docio.split_by(marked, "reason", "")
    docio.write_docs(docio.drop_columns(kept, ["reason"]), rd, "filter", "documents")
    docio.write_docs(rejected, rd, "filter", "rejected")
    histogram = score_histogram(scored) if n_in else np.zeros(HISTOGRAM_BINS, np.int64)
    n_kept = docio.count_where(marked, "reason", "", equal=True) if n_in else 0
    quantiles = {f"p{q}": round(_quantile(histogram, q / 100), 4) for q in (10, 50, 90)} if n_in else {}
    mean = round(float(scored.mean("score")), 4) if n_in else None
    log.info("filter: kept %d of %d documents (cut %.3f)", n_kept, n_in, cut)
    return Manifest(
        stage="filter",
        rows={"in": n_in, "kept": n_kept, "rejected": n_in - n_kept},
        metrics={"cutoff": cut, "score_quantiles": quantiles, "mean_score": mean,
                 "actors": cfg.filter.actors, "num_cpus_per_actor": cfg.filter.num_cpus_per_actor,
                 "num_gpus_per_actor": cfg.filter.num_gpus_per_actor, "embed": cfg.embed.model_dump(mode="json")},
        headline={"kept": n_kept, "of": n_in, "cutoff": round(cut, 4)},
        outputs=["filter/documents", "filter/rejected"],
    )
