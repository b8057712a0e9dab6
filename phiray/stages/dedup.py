"""dedup: exact (whitespace-normalised hash) and near-duplicate (MinHash + LSH) removal on Ray Data.

1. ``map_batches`` adds each document's normalised hash and MinHash signature (datasketch).
2. Exact: ``groupby(norm_hash)`` keeps one representative per hash (smallest path, then id).
3. Near: each survivor emits one row per LSH band key; ``groupby(band)`` verifies candidate pairs by
   estimated Jaccard inside each bucket; the (small) verified edges are clustered with a union-find on
   the driver; the smallest id of a cluster is its representative.
Rejected rows go to ``dedup/rejected`` with ``dup_of`` (the representative's id) and ``reason``.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from phiray.config import RunConfig
from phiray.data import docio, minhash
from phiray.data.lsh import bucket_edges, explode_bands, sign_table
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")


def _pick_exact(group: pa.Table) -> pa.Table:
    """Within one norm_hash group: the first by (path, id) is kept (dup_of ""), the rest point to it."""
    order = sorted(range(group.num_rows), key=lambda i: (group["path"][i].as_py(), group["id"][i].as_py()))
    group = group.take(order)
    rep = group["id"][0].as_py()
    dup_of = [""] + [rep] * (group.num_rows - 1)
    return group.append_column("dup_of", pa.array(dup_of, pa.string()))


def _mark_near(table: pa.Table, rep_of: dict[str, str]) -> pa.Table:
    dup_of = [rep_of.get(d, d) for d in table["id"].to_pylist()]
    dup_of = [r if r != d else "" for r, d in zip(dup_of, table["id"].to_pylist())]
    table = table.set_column(table.column_names.index("dup_of"), "dup_of", pa.array(dup_of, pa.string()))
    return table.set_column(table.column_names.index("reason"), "reason",
                            pa.array(["near_duplicate" if r else "" for r in dup_of], pa.string()))


def _count_marked(ds) -> int:
    """Rows with a ``dup_of``: read from materialised blocks on the driver (no extra Ray tasks)."""
    return sum(sum(1 for d in b["dup_of"].to_pylist() if d)
               for b in ds.iter_batches(batch_format="pyarrow", batch_size=None))


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    import ray.data
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    saved = ctx.shuffle_strategy
    ctx.shuffle_strategy = (ShuffleStrategy.SORT_SHUFFLE_PULL_BASED if cfg.dedup.shuffle == "sort"
                            else ShuffleStrategy.HASH_SHUFFLE)
    try:
        return _dedup(cfg, rd)
    finally:
        ctx.shuffle_strategy = saved


def _dedup(cfg: RunConfig, rd: RunDir) -> Manifest:
    dc = cfg.dedup
    docs = docio.read_docs(rd, "ingest", spread=True)
    # Each Ray Data execution costs task start-ups: materialise only what is used twice, count on the driver.
    signed = docs.map_batches(sign_table, fn_kwargs={"num_perm": dc.num_perm, "shingle_size": dc.shingle_size},
                              batch_format="pyarrow").materialize()
    n_in = signed.count()
    partitions = shuffle_partitions(dc.shuffle_partitions, signed.size_bytes())
    if dc.exact:
        marked = signed.groupby("norm_hash", num_partitions=partitions).map_groups(_pick_exact, batch_format="pyarrow")
    else:
        marked = signed.map_batches(lambda t: t.append_column("dup_of", pa.array([""] * t.num_rows, pa.string())),
                                    batch_format="pyarrow")
    marked = marked.map_batches(lambda t: t.append_column(
        "reason", pa.array(["exact_duplicate" if d else "" for d in t["dup_of"].to_pylist()], pa.string())),
        batch_format="pyarrow").materialize()
    n_exact = _count_marked(marked)
    survivors, exact_rejects = docio.split_by(marked, "dup_of", "")
    bands, rows = minhash.lsh_params(dc.threshold, dc.num_perm)
    rep_of: dict[str, str] = {}
    n_edges = 0
    if dc.near:
        edges = (survivors.map_batches(explode_bands, fn_kwargs={"bands": bands, "rows": rows}, batch_format="pyarrow")
                 .groupby("band", num_partitions=partitions)
                 .map_groups(bucket_edges, fn_kwargs={"threshold": dc.threshold}, batch_format="pyarrow")
                 .take_all())
        n_edges = len(edges)
        rep_of = minhash.cluster_pairs((e["a"], e["b"], e["similarity"]) for e in edges)
        survivors = survivors.map_batches(_mark_near, fn_kwargs={"rep_of": rep_of}, batch_format="pyarrow")
    n_near = sum(1 for doc, rep in rep_of.items() if doc != rep)
    kept, near_rejects = docio.split_by(survivors, "dup_of", "")
    internal = ["norm_hash", "minhash"]
    docio.write_docs(docio.drop_columns(kept, internal + ["reason"]), rd, "dedup", "documents")
    docio.write_docs(docio.drop_columns(exact_rejects.union(near_rejects), internal), rd, "dedup", "rejected")
    n_kept = n_in - n_exact - n_near
    log.info("dedup: %d -> %d documents (%d exact, %d near duplicates)", n_in, n_kept, n_exact, n_near)
    return Manifest(
        stage="dedup",
        rows={"in": n_in, "kept": n_kept, "exact_duplicate": n_exact, "near_duplicate": n_near},
        metrics={"lsh_bands": bands, "lsh_rows": rows, "verified_edges": n_edges,
                 "clusters": len(set(rep_of.values())), "threshold": dc.threshold, "num_perm": dc.num_perm},
        headline={"kept": n_kept, "exact": n_exact, "near": n_near},
        outputs=["dedup/documents", "dedup/rejected"],
    )


def shuffle_partitions(configured: int | None, data_bytes: int, target_bytes: int = 128 << 20) -> int:
    """Hash-shuffle partitions: as configured, else one per ``target_bytes`` of signed documents. Sized
    from the data, not from the CPUs present now (an autoscaling cluster may have one, or none, yet);
    Ray's default of 200 aggregators would swamp a small machine."""
    return configured or max(1, min(1024, -(-data_bytes // target_bytes)))
