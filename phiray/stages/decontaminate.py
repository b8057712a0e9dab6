"""decontaminate: drop documents sharing a long n-gram with HumanEval/MBPP prompts and solutions.

Writes the *unfiltered* clean corpus to ``decontaminate/documents`` (the control model trains on it) and
the dropped documents to ``decontaminate/rejected`` with ``contaminated_by`` (matching task ids).
"""

from __future__ import annotations

import logging

import pyarrow as pa

from phiray.config import RunConfig
from phiray.data import docio, ngrams
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")


def _check(table: pa.Table, index: dict[int, str], n: int) -> pa.Table:
    found = [",".join(ngrams.matches(t, index, n)) for t in table["text"].to_pylist()]
    table = table.append_column("contaminated_by", pa.array(found, pa.string()))
    return table.append_column("reason", pa.array(["contaminated" if f else "" for f in found], pa.string()))


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Split dedup/documents into decontaminate/documents and /rejected by benchmark n-gram overlap."""

    n = cfg.decontaminate.ngram
    tasks, per_benchmark = ngrams.benchmark_tasks(cfg.decontaminate.benchmarks, cfg.decontaminate.mbpp_path)
    index = ngrams.build_index(tasks, n)
    docs = docio.read_docs(rd, "dedup", spread=True)
    checked = docs.map_batches(
        _check, fn_kwargs={"index": index, "n": n}, batch_format="pyarrow", batch_size=64
    ).materialize()
    clean, dirty = docio.split_by(checked, "reason", "")
    docio.write_docs(docio.drop_columns(clean, ["reason", "contaminated_by"]), rd, "decontaminate", "documents")
    docio.write_docs(dirty, rd, "decontaminate", "rejected")
    # Counted by Ray (groupby of the rejected rows only): the driver sees one row per matching task set.
    matched = {k: v for k, v in docio.value_counts(dirty, "contaminated_by").items() if k}
    n_in, n_dirty = checked.count(), sum(matched.values())
    log.info("decontaminate: %d of %d documents matched benchmark %d-grams", n_dirty, n_in, n)
    return Manifest(
        stage="decontaminate",
        rows={"in": n_in, "kept": n_in - n_dirty, "contaminated": n_dirty},
        metrics={"ngram": n, "benchmark_tasks": per_benchmark, "index_ngrams": len(index), "matched_tasks": matched},
        headline={"kept": n_in - n_dirty, "contaminated": n_dirty},
        outputs=["decontaminate/documents", "decontaminate/rejected"],
    )
