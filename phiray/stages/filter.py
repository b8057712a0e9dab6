"""filter: score every clean document on a Ray Data actor pool and keep the best.

``map_batches(QualityScorer, compute=ActorPoolStrategy(size=filter.actors))``: each actor loads the
embedder and the forest once; actors reserve fractional CPUs (``filter.num_cpus_per_actor``) so the read
tasks still get scheduled on a small machine (see RAY_ON_CPU.md), and ``num_gpus_per_actor`` on GPUs.
Selection is by ``keep_fraction`` (a quantile of all scores), by ``target_precision`` (the lowest cut
whose precision on classify's held-out split reaches the target), else by ``threshold``; the manifest
records the held-out precision/recall the chosen cut implies and, with ``filter.validation``, ROC-AUC and
the share of each class kept on phiray's labelled stdlib validation set (``phiray.data.validation``).
Kept documents go to ``filter/documents`` and the rest to ``filter/rejected`` (reason ``low_score``),
both with ``score``.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from phiray import progress
from phiray.config import RunConfig
from phiray.data import docio, validation
from phiray.data.classifier_files import load_embeddings
from phiray.data.cuts import cutoff, implied, precision_cutoff
from phiray.data.scorers import QualityScorer
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")


def score_dataset(ds, cfg: RunConfig, model_bytes: bytes, scorer: type = QualityScorer, known=None):
    """The scoring pipeline (lazy): documents -> documents + score, on the configured actor pool
    (``scorer``: a QualityScorer-compatible class, e.g. an instrumented one in benchmarks; ``known``:
    (ids, embeddings) the scorer need not compute again, see :class:`QualityScorer`)."""
    import ray.data

    fc = cfg.filter
    # One batch per block: every actor of the pool gets work (a fused read would feed them per file).
    return ds.repartition(target_num_rows_per_block=fc.batch_size).map_batches(
        scorer,
        fn_constructor_args=(cfg.embed, model_bytes, fc.keep_embeddings, known),
        batch_size=fc.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=fc.actors),
        num_cpus=fc.num_cpus_per_actor,
        num_gpus=fc.num_gpus_per_actor or None,
    )


def select(scored, cfg: RunConfig, heldout: tuple[np.ndarray, np.ndarray]) -> tuple[float, str, dict]:
    """(cut, how it was chosen, the held-out precision/recall it implies) for a scored dataset (or array)."""
    fc = cfg.filter
    if fc.target_precision is not None:
        cut, how = precision_cutoff(*heldout, fc.target_precision), f"target_precision={fc.target_precision}"
    elif fc.keep_fraction is not None:
        cut, how = dataset_cutoff(scored, None, fc.keep_fraction), f"keep_fraction={fc.keep_fraction}"
    else:
        cut, how = dataset_cutoff(scored, fc.threshold, None), f"threshold={fc.threshold}"
    return cut, how, implied(*heldout, cut) if len(heldout[0]) else {}


HISTOGRAM_BINS = 100_000  # scores are probabilities in [0, 1]: quantiles to 1e-5 from a fixed-size table


def dataset_cutoff(scored, threshold: float | None, keep_fraction: float | None) -> float:
    """``cutoff`` for a (materialised) scored dataset, computed by Ray: the keep-fraction cut is the
    smallest score among the k largest (a distributed sort; one number reaches the driver). A numpy array of
    scores is cut in memory (:func:`cutoff`)."""
    if isinstance(scored, np.ndarray):
        return cutoff(scored, threshold, keep_fraction)
    if keep_fraction is None:
        return cutoff(np.zeros(0), threshold, None)
    n = scored.count()
    if n == 0:
        return 1.0
    k = max(1, int(round(keep_fraction * n)))
    return float(scored.select_columns(["score"]).sort("score", descending=True).limit(k).min("score"))


def score_stats(scored, cut: float) -> tuple[np.ndarray, int, float]:
    """(histogram, documents kept at ``cut``, mean score) of a scored dataset in one pass: per block, the
    counts of its occupied bins of ``HISTOGRAM_BINS`` equal bins of [0, 1], its kept count and its score
    sum, added up here as blocks stream in (the driver holds one fixed-size table, never the rows)."""

    def _block(table: pa.Table) -> pa.Table:
        scores = table["score"].to_numpy(zero_copy_only=False)
        bins = np.clip(np.floor(scores * HISTOGRAM_BINS), 0, HISTOGRAM_BINS - 1).astype(np.int64)
        values, counts = np.unique(bins, return_counts=True)
        return pa.table(
            {
                "bins": pa.array([values], pa.list_(pa.int64())),
                "counts": pa.array([counts.astype(np.int64)], pa.list_(pa.int64())),
                "kept": pa.array([int((scores >= cut).sum())], pa.int64()),
                "total": pa.array([float(scores.sum())], pa.float64()),
            }
        )

    hist, kept, total = np.zeros(HISTOGRAM_BINS, np.int64), 0, 0.0
    for batch in (
        scored.select_columns(["score"]).map_batches(_block, batch_format="pyarrow", batch_size=None).iter_batches()
    ):
        for bins, counts in zip(batch["bins"], batch["counts"]):
            np.add.at(hist, np.asarray(bins, np.int64), np.asarray(counts, np.int64))
        kept += int(np.sum(batch["kept"]))
        total += float(np.sum(batch["total"]))
    n = int(hist.sum())
    return hist, kept, (total / n if n else float("nan"))


def _quantile(histogram: np.ndarray, q: float) -> float:
    """The q-quantile (lower bin edge, within 1/HISTOGRAM_BINS) of a score histogram."""
    cumulative = np.cumsum(histogram)
    return float(np.searchsorted(cumulative, q * cumulative[-1]) / HISTOGRAM_BINS)


def _mark(table: pa.Table, cut: float) -> pa.Table:
    kept = pc.greater_equal(table["score"], cut)
    table = table.append_column("kept", kept)
    return table.append_column("reason", pc.if_else(kept, "", "low_score"))


VALIDATION_SOURCE = "_validation"  # the rows of phiray's labelled validation set among the scored documents


def _with_validation(docs, rd: RunDir) -> tuple[object, list[dict], int]:
    """(the documents plus phiray's labelled validation files, those files' rows, how many are missing).
    The validation files are scored by the same actor pool as the corpus (both cores busy, one model load
    per actor) and told apart by ``source``; they get the corpus's columns so that every block shares one
    schema."""
    import pyarrow.parquet as pq
    import ray.data

    rows, missing = validation.labelled_documents()
    files = rd.parquet_files("decontaminate", "documents")
    if not rows or not files:
        return docs, [], len(missing)
    with rd.fs.open_input_file(files[0]) as handle:
        schema = pq.read_schema(handle)
    table = pa.Table.from_pylist(
        [
            {
                "id": r["id"],
                "text": r["text"],
                "source": VALIDATION_SOURCE,
                "path": r["path"],
                "n_bytes": len(r["text"]),
            }
            for r in rows
        ],
        schema=schema,
    )
    return docs.union(ray.data.from_arrow(table)), rows, len(missing)


def _validation_report(val_scored, rows: list[dict], missing: int, rd: RunDir, cut: float) -> dict:
    """phiray's validation figures (see :mod:`phiray.data.validation`) from the validation rows' scores."""
    by_path = {r["path"]: r["score"] for r in val_scored.select_columns(["path", "score"]).take_all()}
    seen = (
        set(docio.read_docs(rd, "annotate", "labels").select_columns(["id"]).to_pandas()["id"])
        if rd.exists("annotate", "labels")
        else set()
    )
    scores = np.asarray([by_path[r["path"]] for r in rows], np.float64)
    return {**validation.report(rows, scores, cut, seen), "missing": missing}


def classifier(rd: RunDir) -> tuple[bytes, tuple[np.ndarray, np.ndarray]]:
    """classify's saved forest (as bytes, for the scoring actors) and its held-out (scores, labels)."""
    with rd.local_dir("classify/model", upload=False) as d:
        with open(f"{d}/forest.joblib", "rb") as fh:
            model_bytes = fh.read()
        with open(f"{d}/meta.json") as fh:
            meta_metrics = json.load(fh).get("metrics", {})
    heldout = (
        np.asarray(meta_metrics.get("heldout_scores", []), np.float64),
        np.asarray(meta_metrics.get("heldout_labels", []), np.int64),
    )
    return model_bytes, heldout


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Score every decontaminated document with classify's forest; keep those at the cutoff and above."""
    model_bytes, heldout = classifier(rd)
    docs = docio.read_docs(rd, "decontaminate", spread=True)
    val_rows, val_missing = [], 0
    if cfg.filter.validation:
        docs, val_rows, val_missing = _with_validation(docs, rd)
    total = progress.upstream_rows(rd, "decontaminate", "kept")
    # Scored once (the expensive pass) and kept in the object store (Ray spills to disk when it must):
    # a top-fraction cut needs every score before any document can be routed.
    with progress.track("filter scoring", total and total + len(val_rows), "documents") as p:
        known = load_embeddings(rd, cfg.embed.model_dump(mode="json"))  # classify's sample: embedded once
        scored_all = score_dataset(docs, cfg, model_bytes, scorer=p.wrap(QualityScorer), known=known).materialize()
    val_scored, scored = docio.split_by(scored_all, "source", VALIDATION_SOURCE)
    n_in = scored.count()
    cut, how, at_cut = select(scored, cfg, heldout)
    marked = scored.map_batches(_mark, fn_kwargs={"cut": cut}, batch_format="pyarrow")
    kept, rejected = docio.split_by(marked, "reason", "")
    docio.write_docs(docio.drop_columns(kept, ["reason"]), rd, "filter", "documents")
    docio.write_docs(rejected, rd, "filter", "rejected")
    histogram, n_kept, mean_score = score_stats(scored, cut) if n_in else (np.zeros(HISTOGRAM_BINS, np.int64), 0, 0.0)
    quantiles = {f"p{q}": round(_quantile(histogram, q / 100), 4) for q in (10, 50, 90)} if n_in else {}
    mean = round(mean_score, 4) if n_in else None
    if cfg.filter.validation:
        checked = (
            _validation_report(val_scored, val_rows, val_missing, rd, cut)
            if val_rows
            else {"skipped": "no validation file found under the stdlib", "missing": val_missing}
        )
    else:
        checked = {}
    log.info("filter: kept %d of %d documents (cut %.3f by %s; held-out %s)", n_kept, n_in, cut, how, at_cut)
    return Manifest(
        stage="filter",
        rows={"in": n_in, "kept": n_kept, "rejected": n_in - n_kept},
        metrics={
            "cutoff": cut,
            "selection": how,
            "heldout_at_cutoff": at_cut,
            "validation": checked,
            "score_quantiles": quantiles,
            "mean_score": mean,
            "actors": cfg.filter.actors,
            "num_cpus_per_actor": cfg.filter.num_cpus_per_actor,
            "num_gpus_per_actor": cfg.filter.num_gpus_per_actor,
            "embed": cfg.embed.model_dump(mode="json"),
        },
        headline={
            "kept": n_kept,
            "of": n_in,
            "cutoff": round(cut, 4),
            **(
                {"validation_auc": checked["all"]["roc_auc"], "validation_low_kept": checked["all"]["low_kept"]}
                if "all" in checked
                else {}
            ),
        },
        outputs=["filter/documents", "filter/rejected"],
    )
