"""MinHash + LSH near-duplicate search on Ray Data (Arrow batches): shared by `dedup` and `synthesize`.

The work is distributed: signatures in ``map_batches``, candidate pairs verified inside ``groupby(band)``
buckets. Only the verified edges (one per duplicate, at
most a few per cluster) reach the driver, where a union-find makes the clusters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from phiray.data import minhash

if TYPE_CHECKING:
    import ray.data

EDGE_SCHEMA = pa.schema([("a", pa.string()), ("b", pa.string()), ("similarity", pa.float64())])


def sign_table(table: pa.Table, num_perm: int, shingle_size: int, seed: int = 1) -> pa.Table:
    """Adds ``norm_hash`` and ``minhash`` (uint64 list) to a batch with a ``text`` column."""
    texts = table["text"].to_pylist()
    sigs = [minhash.signature(t, num_perm, shingle_size, seed) for t in texts]
    table = table.append_column("norm_hash", pa.array([minhash.normalized_hash(t) for t in texts], pa.string()))
    return table.append_column("minhash", _list_column(sigs, num_perm))


def _list_column(sigs: list[np.ndarray], num_perm: int) -> pa.Array:
    """Signatures as an Arrow ``list<uint64>`` built from one flat buffer (no Python int per value)."""
    flat = np.concatenate(sigs).astype(np.uint64, copy=False) if sigs else np.empty(0, np.uint64)
    offsets = pa.array(np.arange(len(sigs) + 1, dtype=np.int32) * num_perm, pa.int32())
    return pa.ListArray.from_arrays(offsets, pa.array(flat, pa.uint64()))


def signature_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A ``list<uint64>`` column of equal-length signatures as one ``(rows, num_perm)`` uint64 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    rows = len(column)
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.uint64, copy=False)
    return flat.reshape(rows, -1) if rows else flat.reshape(0, 0)


def explode_bands(table: pa.Table, bands: int, rows: int) -> pa.Table:
    """One row per (document ``id``, LSH band key); ``minhash`` is repeated by an Arrow take, not in Python."""
    sigs = signature_matrix(table["minhash"])
    keys = [key for sig in sigs for key in minhash.band_keys(sig, bands, rows)]
    picked = table.select(["id", "minhash"]).take(pa.array(np.repeat(np.arange(table.num_rows), bands)))
    return pa.table({"id": picked["id"], "band": pa.array(keys, pa.string()), "minhash": picked["minhash"]})


def shared_keys(table: pa.Table, key: str) -> pa.Table:
    """The rows whose ``key`` occurs more than once in ``table`` (an LSH bucket's candidates: most band
    keys are held by one document only, and their rows need no verification)."""
    counts = pc.value_counts(table[key])
    shared = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return table.filter(pc.is_in(table[key], value_set=shared))


def bucket_edges(group: pa.Table, threshold: float) -> pa.Table:
    """Verified pairs (estimated Jaccard >= threshold) inside one LSH bucket."""
    if group.num_rows < 2:
        return EDGE_SCHEMA.empty_table()
    members = list(zip(group["id"].to_pylist(), signature_matrix(group["minhash"])))
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
