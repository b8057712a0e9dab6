"""dedup: exact (whitespace-normalised hash) and near-duplicate (MinHash + LSH) removal on Ray Data.

Nothing proportional to the corpus reaches the driver, and document text is never shuffled:
1. ``map_batches`` signs every document (normalised hash, MinHash) into a slim table without text that
   remembers where each row lives (``_file``, ``_row``).
2. Exact: rows are bucketed by ``norm_hash``; in each group the first by (path, id) is kept.
3. Near: exact survivors emit one row per LSH band key; buckets of band keys verify candidate pairs by
   estimated Jaccard; the verified edges are clustered with distributed connected components
   (``phiray.data.components``); a cluster's smallest id is its representative.
4. The (small) marks are grouped by file and each ingest file is re-read once, a row group at a time, to
   apply them.
Rejected rows go to ``dedup/rejected`` with ``dup_of`` (the representative's id) and ``reason``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from phiray import progress
from phiray.config import RunConfig
from phiray.data import docio, minhash
from phiray.data.components import by_bucket, connected_components
from phiray.data.lsh import EDGE_SCHEMA, explode_bands, shared_keys, sign_table, signature_matrix
from phiray.rundir import Manifest, RunDir

if TYPE_CHECKING:
    import ray.data

log = logging.getLogger("phiray")
_SEP = "\0"  # node key = id \0 file \0 row: sorts like the id alone (ids do not contain \0)
BUCKET_BYTES = 64 << 20
MARKS = pa.schema([("_file", pa.string()), ("_row", pa.int64()), ("dup_of", pa.string()), ("reason", pa.string())])


def _sign(table: pa.Table, num_perm: int, shingle_size: int) -> pa.Table:
    signed = sign_table(table.select(["id", "path", "text", "_file", "_row"]), num_perm, shingle_size)
    return signed.drop_columns(["text"])


def _pick_exact(bucket: pa.Table) -> pa.Table:
    """Marks for one bucket of norm hashes: per hash the first by (path, id) is kept, the rest point to it."""
    bucket = bucket.sort_by([("norm_hash", "ascending"), ("path", "ascending"), ("id", "ascending")])
    hashes, ids = bucket["norm_hash"].to_pylist(), bucket["id"].to_pylist()
    dup_of, rep = [], ""
    for i, h in enumerate(hashes):
        first = i == 0 or h != hashes[i - 1]
        rep = ids[i] if first else rep
        dup_of.append("" if first else rep)
    return bucket.append_column("dup_of", pa.array(dup_of, pa.string()))


def _node_keys(table: pa.Table) -> pa.Table:
    keys = [
        f"{i}{_SEP}{f}{_SEP}{r}"
        for i, f, r in zip(table["id"].to_pylist(), table["_file"].to_pylist(), table["_row"].to_pylist())
    ]
    return pa.table({"id": pa.array(keys, pa.string()), "minhash": table["minhash"]})


def _bucket_edges(bucket: pa.Table, threshold: float) -> pa.Table:
    """Verified pairs of every LSH band key in one bucket (one call per bucket, not per key)."""
    bucket = shared_keys(bucket, "band")  # a band key of one document has no pair to verify
    members: dict[str, list] = {}
    for node, band, sig in zip(
        bucket["id"].to_pylist(), bucket["band"].to_pylist(), signature_matrix(bucket["minhash"])
    ):
        members.setdefault(band, []).append((node, sig))
    pairs = [p for group in members.values() if len(group) > 1 for p in minhash.verified_pairs(group, threshold)]
    if not pairs:
        return EDGE_SCHEMA.empty_table()
    a, b, sim = zip(*pairs)
    return pa.table({"a": pa.array(a, pa.string()), "b": pa.array(b, pa.string()), "similarity": pa.array(sim)})


def _near_marks(labels: pa.Table) -> pa.Table:
    nodes = [n.split(_SEP) for n in labels["node"].to_pylist()]
    reps = [r.split(_SEP, 1)[0] for r in labels["rep"].to_pylist()]
    return pa.table(
        {
            "_file": [n[1] for n in nodes],
            "_row": pa.array([int(n[2]) for n in nodes], pa.int64()),
            "dup_of": reps,
            "reason": ["near_duplicate"] * len(reps),
        },
        schema=MARKS,
    )


def _exact_marks(table: pa.Table) -> pa.Table:
    table = table.filter(pc.not_equal(table["dup_of"], ""))
    return pa.table(
        {
            "_file": table["_file"],
            "_row": table["_row"],
            "dup_of": table["dup_of"],
            "reason": pa.array(["exact_duplicate"] * table.num_rows, pa.string()),
        },
        schema=MARKS,
    )


def _file_marks(group: pa.Table) -> pa.Table:
    """One row per ingest file: its marks as lists (row -1 is the file's placeholder, so every file has a row)."""
    marks = group.filter(pc.greater_equal(group["_row"], 0))
    return pa.table(
        {
            "_file": [group["_file"][0].as_py()],
            "rows": pa.array([marks["_row"].to_pylist()], pa.list_(pa.int64())),
            "dup_of": pa.array([marks["dup_of"].to_pylist()], pa.list_(pa.string())),
            "reason": pa.array([marks["reason"].to_pylist()], pa.list_(pa.string())),
        }
    )


def _apply_marks(batch: pa.Table, fs) -> Iterator[pa.Table]:
    """Re-read each ingest file one row group at a time, adding ``dup_of``/``reason`` from its marks: a task
    holds one row group of documents at a time, not a whole file (files are >= 128 MB of text)."""
    for path, rows, dup_of, reason in zip(*(batch[c].to_pylist() for c in ("_file", "rows", "dup_of", "reason"))):
        marks = {row: (d, why) for row, d, why in zip(rows, dup_of, reason)}
        with fs.open_input_file(path) as fh:
            parquet = pq.ParquetFile(fh)
            start = 0
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group)
                found = [marks.get(row, ("", "")) for row in range(start, start + table.num_rows)]
                start += table.num_rows
                table = table.append_column("dup_of", pa.array([d for d, _ in found], pa.string()))
                yield table.append_column("reason", pa.array([why for _, why in found], pa.string()))
        pa.default_memory_pool().release_unused()  # hand the file's buffers back before the next one


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Exact, then MinHash-LSH near-duplicate removal of ingest/documents: dedup/documents and /rejected."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    saved = ctx.shuffle_strategy
    ctx.shuffle_strategy = (
        ShuffleStrategy.SORT_SHUFFLE_PULL_BASED if cfg.dedup.shuffle == "sort" else ShuffleStrategy.HASH_SHUFFLE
    )
    try:
        return _dedup(cfg, rd)
    finally:
        ctx.shuffle_strategy = saved


def _near(survivors, cfg: RunConfig, signed_bytes: int) -> tuple["ray.data.Dataset", dict]:
    """(near-duplicate marks, metrics) of the exact survivors."""
    dc = cfg.dedup
    bands, rows = minhash.lsh_params(dc.threshold, dc.num_perm)
    metrics = {"lsh_bands": bands, "lsh_rows": rows, "verified_edges": 0, "clusters": 0, "cc_rounds": 0}
    if not dc.near or survivors.count() < 2:
        return _empty_marks(), metrics
    exploded = survivors.map_batches(_node_keys, batch_format="pyarrow").map_batches(
        explode_bands, fn_kwargs={"bands": bands, "rows": rows}, batch_format="pyarrow"
    )
    edges = by_bucket(
        exploded,
        "band",
        _bucket_edges,
        _partitions(signed_bytes * bands, dc.shuffle_partitions),
        {"threshold": dc.threshold},
    ).materialize()
    labels, stats = connected_components(edges, _partitions(edges.size_bytes() * 4, dc.shuffle_partitions))
    metrics.update(verified_edges=edges.count(), cc_rounds=stats["rounds"], clusters=stats["components"])
    return labels.map_batches(_near_marks, batch_format="pyarrow"), metrics


def _dedup(cfg: RunConfig, rd: RunDir) -> Manifest:
    dc = cfg.dedup
    docs = docio.read_docs(rd, "ingest", spread=True, with_position=True)
    with progress.track("dedup signatures", progress.upstream_rows(rd, "ingest", "documents"), "documents") as p:
        sign = {"num_perm": dc.num_perm, "shingle_size": dc.shingle_size}
        signed = p.count(docs.map_batches(_sign, fn_kwargs=sign, batch_format="pyarrow")).materialize()
    n_in, signed_bytes = signed.count(), signed.size_bytes()
    survivors, exact = signed, _empty_marks()
    if dc.exact and n_in:
        picked = by_bucket(
            signed, "norm_hash", _pick_exact, _partitions(signed_bytes, dc.shuffle_partitions)
        ).materialize()
        survivors = picked.filter(expr="dup_of == ''").drop_columns(["dup_of"])
        exact = picked.map_batches(_exact_marks, batch_format="pyarrow")
    near, metrics = _near(survivors, cfg, signed_bytes)
    marks = exact.union(near).materialize()
    counts = docio.value_counts(marks, "reason") if marks.count() else {}
    n_exact, n_near = counts.get("exact_duplicate", 0), counts.get("near_duplicate", 0)
    marked = _marked_documents(rd, marks)
    kept, rejected = docio.split_by(marked, "dup_of", "")
    docio.write_docs(docio.drop_columns(kept, ["reason"]), rd, "dedup", "documents")
    docio.write_docs(rejected, rd, "dedup", "rejected")
    n_kept = n_in - n_exact - n_near
    log.info("dedup: %d -> %d documents (%d exact, %d near duplicates)", n_in, n_kept, n_exact, n_near)
    return Manifest(
        stage="dedup",
        rows={"in": n_in, "kept": n_kept, "exact_duplicate": n_exact, "near_duplicate": n_near},
        metrics={**metrics, "threshold": dc.threshold, "num_perm": dc.num_perm},
        headline={"kept": n_kept, "exact": n_exact, "near": n_near},
        outputs=["dedup/documents", "dedup/rejected"],
    )


def _marked_documents(rd: RunDir, marks) -> "ray.data.Dataset":
    """Every ingest document with ``dup_of`` and ``reason``: marks grouped by file, each file read once."""
    import ray.data

    files = rd.parquet_files("ingest", "documents")
    if not files:
        return docio.read_docs(rd, "ingest")
    placeholders = ray.data.from_arrow(
        pa.table(
            {
                "_file": files,
                "_row": pa.array([-1] * len(files), pa.int64()),
                "dup_of": [""] * len(files),
                "reason": [""] * len(files),
            },
            schema=MARKS,
        )
    )
    return (
        placeholders.union(marks)
        .groupby("_file", num_partitions=_partitions())
        .map_groups(_file_marks, batch_format="pyarrow")
        .map_batches(_apply_marks, fn_kwargs={"fs": rd.fs}, batch_size=1, batch_format="pyarrow")
    )


def _empty_marks() -> "ray.data.Dataset":
    import ray.data

    return ray.data.from_arrow(MARKS.empty_table())


def shuffle_partitions(
    configured: int | None, data_bytes: int, target_bytes: int = BUCKET_BYTES, cpus: int | None = None
) -> int:
    """Hash-shuffle partitions: as configured (``dedup.shuffle_partitions``), else enough that no bucket
    holds more than ``target_bytes`` of shuffled data (a task's memory), and at least one per CPU present
    (up to 64) so small data still spreads. The data term sizes large shuffles: an autoscaling cluster may
    have one CPU, or none, when the stage starts. Ray's default of 200 aggregators swamps a small machine."""
    if configured:
        return configured
    return max(min(64, max(1, cpus or 1)), min(1024, -(-data_bytes // target_bytes)))


def _partitions(shuffled_bytes: int = 0, configured: int | None = None) -> int:
    import ray

    return shuffle_partitions(configured, shuffled_bytes, cpus=int(ray.cluster_resources().get("CPU", 1)))
