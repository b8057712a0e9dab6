"""phiray.sandbox.wire: what crosses between candidate and judge is plain data, rebuilt as builtins."""

from __future__ import annotations

import collections
import fractions
import math

import pytest

from phiray.sandbox import wire


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        3**20000,
        1.5,
        float("inf"),
        "text",
        [1, [2]],
        (1, (2,)),
        {1: "a", (2, 3): [4]},
        {1, 2},
        frozenset({3}),
        b"\x00\xff",
        bytearray(b"ab"),
        2 - 3j,
        range(1, 9, 2),
        fractions.Fraction(1, 3),
    ],
    ids=lambda v: type(v).__name__,
)
def test_round_trip_gives_equal_builtin_values(value):
    back = wire.decode(wire.encode(value))
    assert back == value and type(back) is type(value)


def test_subclasses_and_iterators_become_plain_builtins():
    class Sneaky(int):
        def __eq__(self, other):
            return True

    assert type(wire.decode(wire.encode(Sneaky(3)))) is int
    assert wire.decode(wire.encode(collections.Counter("aab"))) == {"a": 2, "b": 1}
    assert list(wire.decode(wire.encode(map(str, [1, 2])))) == ["1", "2"]
    assert math.isnan(wire.decode(wire.encode(float("nan"))))


def test_unknown_objects_need_a_handle_table_and_malformed_data_is_refused():
    with pytest.raises(wire.WireError):
        wire.encode(object())
    handles: dict = {}
    assert "h" in wire.encode(object(), handles) and len(handles) == 1
    for bad in ({"zz": 1}, {"t": 3}, {"d": [[1]]}, {"h": 1}, {"r": [1, "2", 3]}):
        with pytest.raises(wire.WireError):
            wire.decode(bad)
