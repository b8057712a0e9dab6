"""Connected components of an edge list on Ray Data, without gathering the edges anywhere.

The alternating *large-star* / *small-star* rounds of Kiveris et al. ("Connected Components in
MapReduce and Beyond", SoCC 2014): every round is one shuffle of the edge list by node, each node
rewires its neighbourhood towards the smallest node it sees, and the graph contracts into one star per
component whose centre is the component's smallest node (O(log² n) rounds in the worst case, a few on
duplicate graphs, whose components are cliques and stars). The rounds stop when every node is a
centre (all neighbours larger) or a leaf (one neighbour, smaller): that count is a Dataset aggregate.

Shuffles group rows by ``hash(key) % partitions`` ("buckets"), so the function a group runs gets a
whole bucket as one Arrow table (one Python call per bucket, not per node).

    labels, stats = connected_components(edges, partitions=4)   # (node, rep) per non-representative
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Callable

import pyarrow as pa

from phiray.data.docio import block_sums
from phiray.data.minhash import UnionFind

if TYPE_CHECKING:
    import ray.data

EDGES = pa.schema([("u", pa.string()), ("v", pa.string()), ("unsettled", pa.int64()), ("center", pa.int64())])
LABELS = pa.schema([("node", pa.string()), ("rep", pa.string())])
MAX_ROUNDS = 64


def with_bucket(table: pa.Table, key: str, partitions: int) -> pa.Table:
    """Adds ``bucket`` = crc32(key) mod ``partitions`` (stable across processes, unlike ``hash``)."""
    buckets = [zlib.crc32(k.encode("utf-8", "surrogatepass")) % partitions for k in table[key].to_pylist()]
    return table.append_column("bucket", pa.array(buckets, pa.int64()))


def by_bucket(
    ds: "ray.data.Dataset", key: str, fn: Callable[[pa.Table], pa.Table], partitions: int, fn_kwargs: dict | None = None
) -> "ray.data.Dataset":
    """``fn`` applied to all rows sharing ``hash(key) % partitions``, one call per bucket."""

    def _run(table: pa.Table) -> pa.Table:
        return fn(table.drop_columns(["bucket"]), **(fn_kwargs or {}))

    return (
        ds.map_batches(with_bucket, fn_kwargs={"key": key, "partitions": partitions}, batch_format="pyarrow")
        .groupby("bucket", num_partitions=partitions)
        .map_groups(_run, batch_format="pyarrow")
    )


def _neighbours(table: pa.Table) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for u, v in zip(table["u"].to_pylist(), table["v"].to_pylist()):
        if u != v:
            out.setdefault(u, set()).add(v)
    return out


def _settled(u: str, nbrs: set[str]) -> bool:
    """A star centre (every neighbour larger) or a star leaf (one neighbour, smaller)."""
    return min(nbrs) > u or len(nbrs) == 1


def _emit(pairs: list[tuple[str, str, int]], centers: list[str] = ()) -> pa.Table:
    """Undirected edges as both directed rows (each step groups by the first column), plus one self-loop
    row per star centre (counted, then ignored: ``_neighbours`` skips self-loops)."""
    if not pairs and not centers:
        return EDGES.empty_table()
    u = [a for a, b, _ in pairs] + [b for a, b, _ in pairs] + list(centers)
    v = [b for a, b, _ in pairs] + [a for a, b, _ in pairs] + list(centers)
    flags = [f for _, _, f in pairs] * 2 + [0] * len(centers)
    return pa.table(
        {
            "u": pa.array(u, pa.string()),
            "v": pa.array(v, pa.string()),
            "unsettled": pa.array(flags, pa.int64()),
            "center": pa.array([0] * (2 * len(pairs)) + [1] * len(centers), pa.int64()),
        },
        schema=EDGES,
    )


def large_star(table: pa.Table) -> pa.Table:
    """Each node links its strictly larger neighbours to the smallest node of its neighbourhood."""
    pairs = []
    for u, nbrs in _neighbours(table).items():
        m = min(min(nbrs), u)
        pairs += [(v, m, 0) for v in nbrs if v > u and v != m]
    return _emit(pairs)


def small_star(table: pa.Table) -> pa.Table:
    """Each node links itself and its smaller neighbours to the smallest of them; rows carry whether
    the emitting node was settled (a star centre or leaf) before the step."""
    pairs, centers = [], []
    for u, nbrs in _neighbours(table).items():
        m = min(min(nbrs), u)
        flag = 0 if _settled(u, nbrs) else 1
        pairs += [(v, m, flag) for v in nbrs | {u} if v <= u and v != m]
        if m == u:
            centers.append(u)
    return _emit(pairs, centers)


def _step(edges: "ray.data.Dataset", fn, partitions: int) -> "ray.data.Dataset":
    return by_bucket(edges, "u", fn, partitions).materialize()


def connected_components(
    edges: "ray.data.Dataset", partitions: int, a: str = "a", b: str = "b"
) -> tuple["ray.data.Dataset", dict[str, int]]:
    """(labels, stats): ``labels`` has one row (node, rep) per node of an edge that is not its
    component's smallest node, ``rep`` being that smallest node (string order); ``stats`` has
    ``components`` and ``rounds`` (shuffles of the edge list)."""

    def _contract(table: pa.Table) -> pa.Table:
        # Each block's own components become stars first (a union-find over that block's edges only):
        # the distributed rounds then start from a graph of small diameter, often already a star forest.

        uf = UnionFind()
        for x, y in zip(table[a].to_pylist(), table[b].to_pylist()):
            uf.union(x, y)
        return _emit([(node, rep, 1) for node, rep in uf.groups().items() if node != rep])

    current = edges.map_batches(_contract, batch_format="pyarrow", batch_size=None).materialize()
    if current.count() == 0:
        return _empty_labels(), {"components": 0, "rounds": 0}
    rounds = 0
    while True:  # small-star, check, then large-star + small-star until every node is settled
        current = _step(current, small_star, partitions)
        rounds += 1
        totals = block_sums(current, ["unsettled", "center"])  # no aggregator actors per round
        if not totals["unsettled"]:
            break
        if rounds >= MAX_ROUNDS:
            raise RuntimeError(f"connected components did not converge in {MAX_ROUNDS} rounds")
        current = _step(current, large_star, partitions)
        rounds += 1

    def _leaves(table: pa.Table) -> pa.Table:
        leaf = [u > v for u, v in zip(table["u"].to_pylist(), table["v"].to_pylist())]
        kept = table.filter(pa.array(leaf, pa.bool_()))
        return pa.table({"node": kept["u"], "rep": kept["v"]}, schema=LABELS)

    labels = current.map_batches(_leaves, batch_format="pyarrow").materialize()
    return labels, {"components": int(totals["center"]), "rounds": rounds}


def _empty_labels() -> "ray.data.Dataset":
    import ray.data

    return ray.data.from_arrow(LABELS.empty_table())
