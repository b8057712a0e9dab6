"""phiray.data.lsh.duplicate_map: near duplicates on Ray Data, distributed or on the driver, same answer."""

from __future__ import annotations

import pytest

from phiray.data.lsh import duplicate_map

BASE = (
    "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n"
    "    return total / len(values)\n# the average of a list of numbers, computed in one pass\n"
)
ROWS = [
    {"id": "a-01", "group": "a", "text": BASE},
    {"id": "a-02", "group": "a", "text": BASE.replace("one pass", "one single pass")},  # near
    {"id": "a-03", "group": "a", "text": BASE},  # exact
    {"id": "a-04", "group": "a", "text": "class Stack:\n    def push(self, x):\n        self.items.append(x)\n"},
    {"id": "b-01", "group": "b", "text": BASE},  # same text, other group: kept with group=
    {"id": "b-02", "group": "b", "text": "print(sorted(set(words)))\n"},
]


@pytest.mark.parametrize("local_max_rows", [0, 10_000], ids=["distributed", "on-driver"])
def test_duplicates_point_to_the_smallest_id_of_their_cluster(ray_session, local_max_rows):
    ds = ray_session.data.from_items(ROWS, override_num_blocks=3)
    kw = {"threshold": 0.7, "num_perm": 64, "shingle_size": 3, "partitions": 2, "local_max_rows": local_max_rows}
    assert duplicate_map(ds, group="group", **kw) == {"a-02": "a-01", "a-03": "a-01"}
    assert duplicate_map(ds, **kw) == {"a-02": "a-01", "a-03": "a-01", "b-01": "a-01"}
    assert duplicate_map(ray_session.data.from_items(ROWS[:1]), **kw) == {}
