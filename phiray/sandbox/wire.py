"""Data on the wire between the judge and the candidate process (stdlib only: it runs inside the sandbox).

The candidate's values reach the judge only as *plain data*: JSON with a few tags for the types JSON lacks.
The judge rebuilds genuine builtin objects from it, so an object that "equals anything", a patched
``__eq__``/``__bool__``, or a value that inspects its caller cannot cross: the tests compare real ints,
strs, lists... Instances of classes the candidate defined cross as opaque handles (identity only).

Tags (a JSON object always has exactly one key): ``t`` tuple, ``d`` dict (list of pairs), ``s`` set,
``f`` frozenset, ``b`` bytes (latin-1), ``y`` bytearray, ``c`` complex, ``r`` range, ``i`` an iterator
materialised as a list, ``n`` Fraction/Decimal by string, ``h`` handle to an object living in the
candidate, ``x`` an int too long for JSON (hex), ``fn`` a function from the tests (marshalled code; judge ->
candidate only), ``fnref``/``bt`` a candidate function / builtin passed as an argument.
"""

from __future__ import annotations

import json
import re
import struct

MAX_MESSAGE = 64 << 20  # a result larger than this is a failure, not an allocation in the judge
MAX_ITEMS = 1_000_000  # items drawn from an iterator result
MAX_DEPTH = 200


class WireError(Exception):
    """A malformed, oversized or unsupported message."""


def send(sock, obj) -> None:
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise WireError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}")
    sock.sendall(struct.pack(">I", len(data)) + data)


def recv(sock):
    """The next message, or None at end of stream."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > MAX_MESSAGE:
        raise WireError(f"message of {size} bytes exceeds {MAX_MESSAGE}")
    body = _recv_exact(sock, size)
    if body is None:
        return None
    return json.loads(body)


def _recv_exact(sock, n: int):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


_ITER_TYPES = (
    type(iter([])),
    type(iter(())),
    type(iter("")),
    type(iter(range(0))),
    type(iter({})),
    type({}.keys()),
    type({}.values()),
    type({}.items()),
    map,
    filter,
    zip,
    reversed,
    enumerate,
)


def encode(value, handles: dict | None = None, extra=None, depth: int = 0):
    """Plain-data form of ``value``. Unknown objects become handles (kept alive in ``handles``) when a
    table is given, else raise WireError. ``extra(value)`` may return an encoding first (judge side)."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if extra is not None:
        special = extra(value)
        if special is not None:
            return special
    if value is None or value is True or value is False:
        return value
    rec = lambda v: encode(v, handles, extra, depth + 1)  # noqa: E731
    if isinstance(value, int):
        number = int.__index__(value)
        # beyond ~4300 decimal digits json.loads refuses an int: send it as hex (no such limit)
        return {"x": hex(number)} if number.bit_length() > 12_000 else number
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, list):
        return [rec(v) for v in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"t": [rec(v) for v in tuple.__iter__(value)]}
    if isinstance(value, dict):
        return {"d": [[rec(k), rec(v)] for k, v in dict.items(value)]}
    if isinstance(value, frozenset):
        return {"f": [rec(v) for v in frozenset.__iter__(value)]}
    if isinstance(value, set):
        return {"s": [rec(v) for v in set.__iter__(value)]}
    if isinstance(value, bytes):
        return {"b": bytes(value).decode("latin-1")}
    if isinstance(value, bytearray):
        return {"y": bytes(value).decode("latin-1")}
    if isinstance(value, complex):
        return {"c": [value.real, value.imag]}
    if isinstance(value, range):
        return {"r": [value.start, value.stop, value.step]}
    kind = type(value).__module__ + "." + type(value).__qualname__
    if kind in ("fractions.Fraction", "decimal.Decimal"):
        return {"n": [kind, str(value)]}
    if isinstance(value, _ITER_TYPES) or kind in ("builtins.generator",) or type(value).__name__ == "generator":
        items = []
        for item in value:
            if len(items) >= MAX_ITEMS:
                raise WireError("iterator result too long")
            items.append(rec(item))
        return {"i": items}
    if handles is None:
        raise WireError(f"cannot send a {kind}")
    handles[id(value)] = value
    return {"h": id(value), "cls": type(value).__qualname__}


def decode(data, on_tag=None, depth: int = 0):
    """Genuine builtin objects from plain data. ``on_tag(tag, payload)`` handles ``h``/``fn``."""
    if depth > MAX_DEPTH:
        raise WireError("value nested too deeply")
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    rec = lambda v: decode(v, on_tag, depth + 1)  # noqa: E731
    if isinstance(data, list):
        return [rec(v) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 2):
        raise WireError("malformed value")
    tag = next(iter(data))
    body = data[tag]
    if tag in ("t", "s", "f", "i"):
        if not isinstance(body, list):
            raise WireError("malformed sequence")
        items = [rec(v) for v in body]
        return {"t": tuple, "s": set, "f": frozenset, "i": iter}[tag](items)
    if tag == "d":
        return {rec(k): rec(v) for k, v in _pairs(body)}
    if tag in ("b", "y") and isinstance(body, str):
        raw = body.encode("latin-1")
        return raw if tag == "b" else bytearray(raw)
    if tag == "x" and isinstance(body, str) and len(body) < 1 << 22:
        return int(body, 16)
    if tag == "c" and isinstance(body, list) and len(body) == 2:
        return complex(float(body[0]), float(body[1]))
    if tag == "r" and isinstance(body, list) and len(body) == 3 and all(type(v) is int for v in body):
        return range(*body)
    if tag == "n" and isinstance(body, list) and len(body) == 2:
        return _number(body[0], str(body[1]))
    if on_tag is not None and tag in ("h", "fn", "fnref", "bt"):
        return on_tag(tag, data)
    raise WireError(f"unsupported value tag {tag!r}")


def _pairs(body):
    if not isinstance(body, list) or not all(isinstance(p, list) and len(p) == 2 for p in body):
        raise WireError("malformed dict")
    return body


FRACTION_TEXT = re.compile(r"[+-]?\d{1,5000}(/\d{1,5000})?")


def _number(kind: str, text: str):
    """A Fraction or Decimal from its str(): bounded in size, and a Fraction only as n or n/d, so the
    judge never expands a hostile exponent ("1e999999999") into a giant integer."""
    if len(text) > 10_000:
        raise WireError("number text too long")
    if kind == "fractions.Fraction":
        if not FRACTION_TEXT.fullmatch(text):
            raise WireError("malformed Fraction")
        from fractions import Fraction

        return Fraction(text)
    if kind == "decimal.Decimal":
        from decimal import Decimal

        return Decimal(text)
    raise WireError(f"unsupported number type {kind!r}")
