"""ingest: read the configured corpora into ``ingest/documents`` (+ ``ingest/skipped`` with reasons).

Work units (one file, one JSONL/Parquet file; a row range or file shard of a Hugging Face split) are
fanned out with Ray Data; a unit or row that cannot be a document becomes a skip row counted by reason
(binary, non_utf8, empty, oversized, unreadable, corrupt, language) and never stops the run. A source
that cannot be read at all (a Hugging Face dataset that cannot be opened, a missing column) fails the
stage before anything is read, naming the source.
"""

from __future__ import annotations

import hashlib
import logging
import os

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from phiray import progress
from phiray.config import IngestConfig, RunConfig, SourceConfig
from phiray.data import docio, hf, readers
from phiray.rundir import Manifest, RunDir
from phiray.schemas import INGEST_READ as _SCHEMA

log = logging.getLogger("phiray")
# Files per read task at most. A task yields at least one block, and every later pass over the read runs
# one Ray task per block (~0.15 s each on 2 loaded cores): with 64 files per task, 100k small files made
# 1,563 blocks of ~0.5 MB and each pass took minutes. A task still yields a block every
# ``docio.BLOCK_BYTES``, so its memory does not grow with this; at least 4 tasks per CPU remain.
UNITS_PER_TASK = 512


def _spread(paths: list[str], root: str) -> list[str]:
    """A stable order that spreads a prefix over the whole tree (so a document limit samples every
    package, not the alphabetically first ones)."""
    return sorted(paths, key=lambda p: hashlib.sha1(os.path.relpath(p, root).encode()).hexdigest())


_UNITS = pa.schema(
    [("kind", pa.string()), ("path", pa.string()), ("source", pa.string()), ("text_column", pa.string())]
)


def source_units(src: SourceConfig) -> pa.Table:
    """The work units of one source, one row each (columns of ``_UNITS``: a million file paths are ~0.1 GB
    of Arrow strings on the driver, a list of dicts is several times that)."""
    if src.kind == "stdlib":
        root = str(readers.stdlib_root())
        paths, name = _spread(readers.list_stdlib(), root), src.name or "stdlib"
    elif src.kind == "files":
        if not src.path:
            raise ValueError("ingest.sources[].path is required for kind=files")
        paths, name = readers.list_files(src.path, src.glob), src.name or os.path.basename(src.path.rstrip("/"))
    elif src.kind in ("jsonl", "parquet"):
        if not src.path:
            raise ValueError(f"ingest.sources[].path is required for kind={src.kind}")
        suffixes = (".jsonl", ".json", ".jsonl.gz") if src.kind == "jsonl" else (".parquet",)
        paths, name = readers.expand_paths(src.path, suffixes), src.name or os.path.basename(src.path.rstrip("/"))
    else:
        raise ValueError(f"source kind {src.kind!r} has no file units")
    if src.limit is not None:
        paths = paths[: src.limit]
    n = len(paths)
    columns = {"kind": [src.kind] * n, "path": paths, "source": [name] * n, "text_column": [src.text_column] * n}
    return pa.table(columns, schema=_UNITS)


def _read_units(batch: dict, min_bytes: int, max_bytes: int, block_bytes: int, counter=None):
    """The units of one task, streamed: a table is yielded whenever ~``block_bytes`` of rows are read
    (a big JSONL/Parquet unit is never held as one Python list)."""
    rows: list[dict] = []
    size = 0
    for i in range(len(batch["path"])):
        unit = {k: str(batch[k][i]) for k in ("kind", "path", "source", "text_column")}
        for row in readers.iter_unit(unit, min_bytes, max_bytes):
            rows.append(row)
            size += len(row["text"]) + len(row["path"]) + 128
            if size >= block_bytes:
                yield _counted(pa.Table.from_pylist(rows, schema=_SCHEMA), counter)
                rows, size = [], 0
    if rows:
        yield _counted(pa.Table.from_pylist(rows, schema=_SCHEMA), counter)


def _counted(table: pa.Table, counter) -> pa.Table:
    if counter is not None:
        counter.add(table.num_rows)
    return table


def _cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _units_dataset(units: pa.Table, cfg: IngestConfig, counter=None):
    """Units fanned out over tasks: at least ~4 per CPU, at most ``UNITS_PER_TASK`` units each."""
    import ray.data

    n = units.num_rows
    blocks = max(1, min(n, max(4 * _cpus(), -(-n // UNITS_PER_TASK))))
    per_task = -(-n // blocks)
    # One table per task, copied out (``take``) so that each object holds its own rows, not the whole buffer.
    ds = ray.data.from_arrow([units.take(pa.array(range(i, min(n, i + per_task)))) for i in range(0, n, per_task)])
    return ds.map_batches(
        _read_units,
        fn_kwargs={
            "min_bytes": cfg.min_bytes,
            "max_bytes": cfg.max_bytes,
            "block_bytes": docio.BLOCK_BYTES,
            "counter": counter,
        },
        batch_size=per_task,
        batch_format="numpy",
    )


def open_hf_sources(ic: IngestConfig) -> list[tuple[SourceConfig, object]]:
    """Every kind=hf source opened and checked (columns, not empty) before any file is read: a bad source
    fails the stage at once, naming it, instead of after the rest of the corpus was read."""
    opened = []
    for i, src in enumerate(ic.sources):
        if src.kind == "hf":
            where = f"ingest.sources[{i}]"
            split = hf.open_split(src, where)
            hf.check_columns(split, src, where)
            opened.append((src, split))
    return opened


def _hf_dataset(src: SourceConfig, split, ic: IngestConfig, counter=None):
    """A Hugging Face split as document rows, read by Ray tasks (``phiray.data.hf``)."""
    spec = hf.RowSpec(
        label=src.name or hf.dataset_of(src),
        text_column=src.text_column,
        path_column=src.path_column,
        language_column=src.language_column,
        languages=frozenset(x.lower() for x in src.languages) if src.languages else None,
        min_bytes=ic.min_bytes,
        max_bytes=ic.max_bytes,
    )
    return hf.read_split(split, spec, _SCHEMA, _cpus(), counter, one_shard=src.limit is not None)


def _hf_metrics(opened: list[tuple[SourceConfig, object]]) -> list[dict]:
    return [
        {
            "dataset": hf.dataset_of(src),
            "split": src.split,
            "streaming": src.streaming,
            "rows": hf.known_rows(split, src),
            "fingerprint": getattr(split, "_fingerprint", None),
        }
        for src, split in opened
    ]


def _expected_inputs(units: pa.Table, opened: list[tuple[SourceConfig, object]]) -> int | None:
    """Rows the read will produce, when known up front (a file is one row; a JSONL/Parquet file is not)."""
    if {"jsonl", "parquet"} & set(pa.compute.unique(units["kind"]).to_pylist()):
        return None
    rows = [hf.known_rows(split, src) for src, split in opened]
    return None if None in rows else units.num_rows + sum(rows)


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Read every configured source into ``ingest/documents`` and ``ingest/skipped`` (with reasons)."""
    ic = cfg.ingest
    if not ic.sources:
        raise ValueError("ingest: no sources configured")
    opened = open_hf_sources(ic)
    units = pa.concat_tables([source_units(src) for src in ic.sources if src.kind != "hf"] or [_UNITS.empty_table()])
    with progress.track("ingest", total=_expected_inputs(units, opened), unit="inputs") as tracker:
        counter = tracker.counter
        parts = [_units_dataset(units, ic, counter)] if units.num_rows else []
        parts += [_hf_dataset(src, split, ic, counter) for src, split in opened]
        read = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        read = read.materialize()  # counted and written twice below: read every file once (spills when big)
    reasons = docio.value_counts(read, "reason")
    accepted, skipped = docio.split_by(read, "reason", "")
    if ic.max_documents is not None:
        # The smallest by hash of (path, id): a deterministic subset that spreads over the whole corpus.
        accepted = docio.smallest_by_hash(accepted, ["path", "id"], ic.max_documents)
    accepted = docio.drop_columns(accepted, ["reason"])
    docio.write_docs(accepted, rd, "ingest", "documents")
    docio.write_docs(docio.drop_columns(skipped, ["id", "text"]), rd, "ingest", "skipped")
    # Counted from the blocks in memory when nothing was sampled away (no second read of the output).
    written = accepted if ic.max_documents is None else docio.read_docs(rd, "ingest")
    n_docs, n_bytes = _count_bytes(written)
    skipped_by_reason = {r: n for r, n in sorted(reasons.items()) if r}
    n_read = sum(reasons.values())
    log.info("ingest: %d documents (%d bytes), skipped %s", n_docs, n_bytes, skipped_by_reason)
    return Manifest(
        stage="ingest",
        rows={"units": units.num_rows, "read": n_read, "documents": n_docs, "skipped": sum(skipped_by_reason.values())},
        metrics={
            "skipped_by_reason": skipped_by_reason,
            "document_bytes": n_bytes,
            "sources": [s.model_dump(mode="json") for s in ic.sources],
            "hf": _hf_metrics(opened),
        },
        headline={"documents": n_docs, "skipped": sum(skipped_by_reason.values()), "MB": round(n_bytes / 1e6, 2)},
        outputs=["ingest/documents", "ingest/skipped"],
    )


def _count_bytes(ds) -> tuple[int, int]:
    """(rows, sum of n_bytes) of a dataset, from per-block sums."""
    sums = docio.block_sums(ds, ["n_bytes"])
    return int(sums["rows"]), int(sums["n_bytes"])
