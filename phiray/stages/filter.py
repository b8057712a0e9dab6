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


def score_dataset(ds, cfg: RunConfig, model_bytes: bytes):
    """The scoring pipeline (lazy): documents -> documents + score, on the configured actor pool."""
    import ray.data

    fc = cfg.filter
    return ds.map_batches(
        QualityScorer, fn_constructor_args=(cfg.embed.model_dump(mode="json"), model_bytes, fc.keep_embeddings),
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
    scores = np.concatenate([b["score"].to_numpy() for b in scored.iter_batches(batch_format="pyarrow", batch_size=None)]
                            or [np.zeros(0)])
    cut = cutoff(scores, cfg.filter.threshold, cfg.filter.top_fraction)
    marked = scored.map_batches(_mark, fn_kwargs={"cut": cut}, batch_format="pyarrow")
    kept, rejected = docio.split_by(marked, "reason", "")
    docio.write_docs(docio.drop_columns(kept, ["reason"]), rd, "filter", "documents")
    docio.write_docs(rejected, rd, "filter", "rejected")
    n_kept = int((scores >= cut).sum())
    quantiles = {f"p{q}": round(float(np.percentile(scores, q)), 4) for q in (10, 50, 90)} if len(scores) else {}
    log.info("filter: kept %d of %d documents (cut %.3f)", n_kept, len(scores), cut)
    return Manifest(
        stage="filter",
        rows={"in": int(len(scores)), "kept": n_kept, "rejected": int(len(scores)) - n_kept},
        metrics={"cutoff": cut, "score_quantiles": quantiles, "mean_score": round(float(scores.mean()), 4) if len(scores) else None,
                 "actors": cfg.filter.actors, "num_cpus_per_actor": cfg.filter.num_cpus_per_actor,
                 "num_gpus_per_actor": cfg.filter.num_gpus_per_actor, "embed": cfg.embed.model_dump(mode="json")},
        headline={"kept": n_kept, "of": int(len(scores)), "cutoff": round(cut, 4)},
        outputs=["filter/documents", "filter/rejected"],
    )
