"""phiray.data.components: distributed connected components equal the union-find answer."""

from __future__ import annotations

import random

import pytest

from phiray.data.components import connected_components
from phiray.data.minhash import cluster_pairs


def _graphs() -> dict[str, list[tuple[str, str]]]:
    chain = [(f"c{i:03d}", f"c{i + 1:03d}") for i in range(40)]  # diameter 40
    reversed_chain = [(f"r{i + 1:03d}", f"r{i:03d}") for i in range(30)]
    star = [(f"s{i:03d}", "s050") for i in range(30)]  # centre not the smallest
    cycle = [(f"y{i:02d}", f"y{(i + 1) % 12:02d}") for i in range(12)]
    rng = random.Random(7)
    nodes = [f"n{i:03d}" for i in range(120)]
    sparse = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(90)]  # many small components
    return {"mixed": chain + reversed_chain + star + cycle + [("c010", "c010")], "sparse": sparse, "pair": [("b", "a")]}


@pytest.fixture
def sort_shuffle(ray_session):
    """The dedup stage's default shuffle (tasks, not aggregator actors: fast on a small machine)."""
    from ray.data.context import DataContext, ShuffleStrategy

    ctx = DataContext.get_current()
    saved, ctx.shuffle_strategy = ctx.shuffle_strategy, ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    yield
    ctx.shuffle_strategy = saved


@pytest.mark.parametrize("name", ["mixed", "sparse", "pair"])
def test_components_equal_union_find(ray_session, sort_shuffle, name):
    edges = _graphs()[name]
    ds = ray_session.data.from_items([{"a": a, "b": b} for a, b in edges], override_num_blocks=8)
    labels, stats = connected_components(ds, partitions=3)
    got = {r["node"]: r["rep"] for r in labels.take_all()}
    groups = cluster_pairs((a, b, 1.0) for a, b in edges)
    assert got == {k: rep for k, rep in groups.items() if k != rep}
    assert stats["components"] == len(set(groups.values()))
    assert stats["rounds"] <= 12  # log-depth: a 40-node chain does not take 40 rounds


def test_no_edges(ray_session, sort_shuffle):
    ds = ray_session.data.from_items([{"a": "x", "b": "y"}]).filter(lambda r: False)
    labels, stats = connected_components(ds, partitions=2)
    assert labels.count() == 0 and stats == {"components": 0, "rounds": 0}


def test_aggregate_helpers_and_hash_sample(ray_session):
    import hashlib

    from phiray.data import docio

    rows = [{"path": f"p{i}", "id": f"i{i}", "reason": "" if i % 3 else "empty", "n": i} for i in range(300)]
    ds = ray_session.data.from_items(rows, override_num_blocks=6)
    assert docio.value_counts(ds, "reason") == {"": 200, "empty": 100}
    assert docio.count_where(ds, "reason", "") == 100 and docio.column_sum(ds, "n") == sum(range(300))
    assert docio.block_sums(ds, ["n"]) == {"rows": 300, "n": sum(range(300))}  # one row per block, summed here
    assert docio.block_sums(ray_session.data.from_items([]), ["n"]) == {"rows": 0, "n": 0}
    assert docio.value_counts(ray_session.data.from_items([]), "reason") == {}
    chosen = sorted(r["path"] for r in docio.smallest_by_hash(ds, ["path", "id"], 40).take_all())
    expected = sorted(
        sorted(rows, key=lambda r: hashlib.sha1(f"{r['path']}\0{r['id']}".encode()).hexdigest())[:40],
        key=lambda r: r["path"],
    )
    assert chosen == [r["path"] for r in expected]


def test_verify_pool_is_sized_to_the_cluster(ray_session):
    from phiray.config import load_config
    from phiray.stages.synthesize import verify_pool_size

    # The test cluster: 2 CPUs and 4 `evaluator` resources.
    assert verify_pool_size(load_config("tiny", overrides=["sandbox.workers=1"])) == 2
    assert verify_pool_size(load_config("tiny", overrides=["sandbox.workers=2"])) == 1
    hardened = load_config("tiny", overrides=['sandbox.ray_resources={"evaluator": 2}', "sandbox.workers=1"])
    assert verify_pool_size(hardened) == 2
