"""Corpus readers: turn a configured source into document rows, skipping bad inputs by reason.

Readers are plain functions over one *unit* (a file, a JSONL file, a Parquet file) so the ingest stage
can fan them out with Ray Data; a bad unit never raises, it yields a row whose ``reason`` says why it was
skipped: ``binary``, ``non_utf8``, ``empty``, ``oversized``, ``unreadable`` or ``corrupt`` (and, for a
Hugging Face source filtered by language, ``language``: ``phiray.data.hf``).
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
import os
import sysconfig
from pathlib import Path
from typing import Iterator

SKIP_REASONS = ("binary", "non_utf8", "empty", "oversized", "unreadable", "corrupt", "language")
# A NUL byte in the head is the usual binary test (git, grep): text in any UTF encoding but 16/32 has none.
_BINARY_PROBE = 8192


def doc_id(text: str) -> str:
    """Content hash of a document (the ``id`` column)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def record(text: str, source: str, path: str, n_bytes: int, reason: str = "") -> dict:
    return {
        "id": doc_id(text) if not reason else "",
        "text": text if not reason else "",
        "source": source,
        "path": path,
        "n_bytes": int(n_bytes),
        "reason": reason,
    }


def stdlib_root() -> Path:
    """The running interpreter's standard library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def list_files(root: str | os.PathLike, pattern: str = "**/*.py", exclude_parts: tuple[str, ...] = ()) -> list[str]:
    """Files under ``root`` matching ``pattern``, sorted; paths with an excluded component are left out."""
    root = Path(root)
    if root.is_file():
        return [str(root)]
    matches = globlib.glob(str(root / pattern), recursive=True)
    out = []
    for m in matches:
        parts = Path(m).relative_to(root).parts
        # A dangling link is listed too: it is counted as 'unreadable' rather than silently missed.
        if (os.path.isfile(m) or os.path.islink(m)) and not any(p in exclude_parts for p in parts):
            out.append(m)
    return sorted(out)


def list_stdlib() -> list[str]:
    """Python files of the standard library, without installed third-party packages or bytecode."""
    return list_files(stdlib_root(), "**/*.py", exclude_parts=("site-packages", "dist-packages", "__pycache__"))


def expand_paths(path: str, suffixes: tuple[str, ...]) -> list[str]:
    """A file, a directory (files with the suffixes, recursively) or a glob -> sorted file list."""
    if os.path.isdir(path):
        return sorted(str(p) for p in Path(path).rglob("*") if p.is_file() and p.name.endswith(suffixes))
    if any(ch in path for ch in "*?["):
        return sorted(p for p in globlib.glob(path, recursive=True) if os.path.isfile(p))
    return [path]


def decode(raw: bytes) -> tuple[str, str]:
    """(text, "") or ("", reason) for raw file bytes."""
    if b"\x00" in raw[:_BINARY_PROBE]:
        return "", "binary"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", "non_utf8"
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, ""


def read_text_file(path: str, source: str, min_bytes: int, max_bytes: int) -> dict:
    """One file -> one row (a skip row with ``reason`` when it cannot be a document)."""
    try:
        size = os.path.getsize(path)
        if size > max_bytes:  # checked before reading: a 50 MB file is never loaded
            return record("", source, path, size, "oversized")
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError:
        return record("", source, path, 0, "unreadable")
    if len(raw) > max_bytes:  # grew since stat
        return record("", source, path, len(raw), "oversized")
    text, reason = decode(raw)
    if reason:
        return record("", source, path, len(raw), reason)
    if len(raw) < min_bytes or not text.strip():
        return record("", source, path, len(raw), "empty")
    return record(text, source, path, len(raw))


def check_text(value: object, source: str, path: str, min_bytes: int, max_bytes: int) -> dict:
    """One text value (a JSONL field, a Parquet or Hugging Face cell) -> a document row or a skip row."""
    if value is None:
        return record("", source, path, 0, "empty")
    if isinstance(value, bytes):
        text, reason = decode(value)
        if reason:
            return record("", source, path, len(value), reason)
        value = text
    if not isinstance(value, str):
        return record("", source, path, 0, "corrupt")
    try:
        n_bytes = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates from a lenient JSON decoder
        return record("", source, path, 0, "non_utf8")
    if n_bytes > max_bytes:
        return record("", source, path, n_bytes, "oversized")
    if n_bytes < min_bytes or not value.strip():
        return record("", source, path, n_bytes, "empty")
    return record(value, source, path, n_bytes)


def read_jsonl_file(path: str, source: str, text_column: str, min_bytes: int, max_bytes: int) -> Iterator[dict]:
    """One JSONL file -> one row per line; bad lines are skip rows ("corrupt", "non_utf8", ...)."""
    try:
        fh = open(path, "rb")
    except OSError:
        yield record("", source, path, 0, "unreadable")
        return
    with fh:
        for lineno, line in enumerate(fh, 1):
            where = f"{path}:{lineno}"
            if not line.strip():
                continue
            if len(line) > max_bytes * 2 + 1024:  # the text alone cannot fit: do not parse it
                yield record("", source, where, len(line), "oversized")
                continue
            try:
                obj = json.loads(line.decode("utf-8"))
            except UnicodeDecodeError:
                yield record("", source, where, len(line), "non_utf8")
                continue
            except ValueError:
                yield record("", source, where, len(line), "corrupt")
                continue
            value = obj.get(text_column) if isinstance(obj, dict) else None
            yield check_text(value, source, where, min_bytes, max_bytes)


def read_parquet_file(path: str, source: str, text_column: str, min_bytes: int, max_bytes: int) -> Iterator[dict]:
    """One Parquet file -> one row per record; an unreadable or column-less file is one skip row."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        if text_column not in pf.schema_arrow.names:
            yield record("", source, path, 0, "corrupt")
            return
        row = 0
        for batch in pf.iter_batches(columns=[text_column], batch_size=1024):
            for value in batch.column(0).to_pylist():
                yield check_text(value, source, f"{path}#{row}", min_bytes, max_bytes)
                row += 1
    except (OSError, ValueError) as err:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
        yield record("", source, path, 0, "unreadable" if isinstance(err, OSError) else "corrupt")


def read_unit(unit: dict, min_bytes: int, max_bytes: int) -> list[dict]:
    """Dispatch one work unit ``{"kind", "path", "source", "text_column"}`` to its reader."""
    return list(iter_unit(unit, min_bytes, max_bytes))


def iter_unit(unit: dict, min_bytes: int, max_bytes: int) -> Iterator[dict]:
    """The rows of one work unit, one at a time (a big JSONL/Parquet file is streamed)."""
    kind, path, source = unit["kind"], unit["path"], unit["source"]
    if kind in ("stdlib", "files"):
        yield read_text_file(path, source, min_bytes, max_bytes)
    elif kind == "jsonl":
        yield from read_jsonl_file(path, source, unit["text_column"], min_bytes, max_bytes)
    elif kind == "parquet":
        yield from read_parquet_file(path, source, unit["text_column"], min_bytes, max_bytes)
    else:
        raise ValueError(f"unknown source kind {kind!r}")
