"""MinHash + LSH near-duplicate search on Ray Data (Arrow batches): shared by `dedup` and `synthesize`.

The work is distributed: signatures in ``map_batches``, candidate pairs verified inside ``groupby(band)``
buckets. Only the verified edges (one per duplicate, at
most a few per cluster) reach the driver, where a union-find makes the clusters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from phiray.data import minhash

if TYPE_CHECKING:
    import ray.data

EDGE_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string()), ("similarity", pa.float64())])


def sign_table(table: pa.Table, num_perm: int, shingle_size: int, seed: int = 1) -> pa.Table:
    """Adds ``norm_hash`` and ``minhash`` (uint64 list) to a batch with a ``text`` column."""
    texts = table["text"].to_pylist()
    sigs = [minhash.signature(t, num_perm, shingle_size, seed) for t in texts]
    table = table.append_column("norm_hash", pa.array([minhash.normalized_hash(t) for t in texts], pa.string()))
    return table.append_column("minhash", pa.array([s.tolist() for s in sigs], pa.list_(pa.uint64())))


def explode_bands(table: pa.Table, bands: int, rows: int) -> pa.Table:
    """One row per (document ``id``, LSH band key)."""
    ids, sigs = table["id"].to_pylist(), table["minhash"].to_pylist()
    out_ids, out_keys, out_sigs = [], [], []
    for doc, sig in zip(ids, sigs):
        for key in minhash.band_keys(sig, bands, rows):
            out_ids.append(doc)
            out_keys.append(key)
            out_sigs.append(sig)
    return pa.table(
        {
            "id": pa.array(out_ids, pa.string()),
            "band": pa.array(out_keys, pa.string()),
            "minhash": pa.array(out_sigs, pa.list_(pa.uint64())),
        }
    )


def bucket_edges(group: pa.Table, threshold: float) -> pa.Table:
    """Verified pairs (estimated Jaccard >= threshold) inside one LSH bucket."""
    if group.num_rows < 2:
        return EDGE_SCHEMA.empty_table()
    members = [
        (d, np.asarray(s, dtype=np.uint64)) for d, s in zip(group["id"].to_pylist(), group["minhash"].to_pylist())
    ]
    pairs = minhash.verified_pairs(members, threshold)
    if not pairs:
        return EDGE_SCHEMA.empty_table()
    a, b, sim = zip(*pairs)
    return pa.table({"a": pa.array(a, pa.string()), "b": pa.array(b, pa.string()), "similarity": pa.array(sim)})


def duplicate_map(
    ds: "ray.data.Dataset",
    threshold: float,
    num_perm: int,
    shingle_size: int,
    seed: int = 1,
    partitions: int = 2,
    group: str | None = None,
    local_max_rows: int = 0,
) -> dict[str, str]:
    """For a dataset with ``id`` and ``text`` (and ``group``: only rows of the same group are compared):
    {id: id of its cluster's representative} for every near duplicate, exact ones included (identical
    texts have identical signatures, so they share every band). The representative, the cluster's
    smallest id, is not in the map. Up to ``local_max_rows`` (document, band) rows the buckets are formed
    on the driver, which spares a small run the start-up of a distributed shuffle."""
    bands, rows = minhash.lsh_params(threshold, num_perm)

    def sign_and_explode(table: pa.Table) -> pa.Table:
        exploded = explode_bands(sign_table(table, num_perm, shingle_size, seed), bands, rows)
        if group is None:
            return exploded
        per_doc = dict(zip(table["id"].to_pylist(), table[group].to_pylist()))
        keys = [f"{per_doc[d]}|{b}" for d, b in zip(exploded["id"].to_pylist(), exploded["band"].to_pylist())]
        return exploded.set_column(exploded.column_names.index("band"), "band", pa.array(keys, pa.string()))

    exploded = (
        ds.select_columns(["id", "text"] + ([group] if group else []))
        .map_batches(sign_and_explode, batch_format="pyarrow")
        .materialize()
    )
    n = exploded.count()
    if n < 2:  # nothing to compare (and Ray's shuffle of an empty dataset has no schema)
        return {}
    if n <= local_max_rows:
        buckets: dict[str, list[tuple[str, np.ndarray]]] = {}
        for batch in exploded.iter_batches(batch_format="pyarrow", batch_size=None):
            for doc, band, sig in zip(batch["id"].to_pylist(), batch["band"].to_pylist(), batch["minhash"].to_pylist()):
                buckets.setdefault(band, []).append((doc, np.asarray(sig, dtype=np.uint64)))
        edges = [
            {"a": a, "b": b, "similarity": sim}
            for members in buckets.values()
            if len(members) > 1
            for a, b, sim in minhash.verified_pairs(members, threshold)
        ]
    else:
        edges = (
            exploded.groupby("band", num_partitions=partitions)
            .map_groups(bucket_edges, fn_kwargs={"threshold": threshold}, batch_format="pyarrow")
            .take_all()
        )
    groups = minhash.cluster_pairs((e["a"], e["b"], e["similarity"]) for e in edges)
    return {doc: rep for doc, rep in groups.items() if doc != rep}
