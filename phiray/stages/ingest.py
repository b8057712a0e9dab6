"""ingest: read the configured corpora into ``ingest/documents`` (+ ``ingest/skipped`` with reasons).

Work units (one file, one JSONL/Parquet file) are fanned out with Ray Data; a unit that cannot be a
document becomes a skip row counted by reason (binary, non_utf8, empty, oversized, unreadable, corrupt)
and never stops the run.
"""

from __future__ import annotations

import hashlib
import logging
import os

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from phiray.config import IngestConfig, RunConfig, SourceConfig
from phiray.data import docio, readers
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")
UNITS_PER_TASK = 64  # files per read task at most (more tasks than CPUs, bounded start-up cost)

_SCHEMA = pa.schema([("id", pa.string()), ("text", pa.large_string()), ("source", pa.string()),
                     ("path", pa.string()), ("n_bytes", pa.int64()), ("reason", pa.string())])


def _spread(paths: list[str], root: str) -> list[str]:
    """A stable order that spreads a prefix over the whole tree (so a document limit samples every
    package, not the alphabetically first ones)."""
    return sorted(paths, key=lambda p: hashlib.sha1(os.path.relpath(p, root).encode()).hexdigest())


def source_units(src: SourceConfig) -> list[dict]:
    """The work units of one source."""
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
    return [{"kind": src.kind, "path": p, "source": name, "text_column": src.text_column} for p in paths]


def _read_units(batch: dict, min_bytes: int, max_bytes: int, block_bytes: int):
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
                yield pa.Table.from_pylist(rows, schema=_SCHEMA)
                rows, size = [], 0
    if rows:
        yield pa.Table.from_pylist(rows, schema=_SCHEMA)


def _units_dataset(units: list[dict], cfg: IngestConfig):
    """Units fanned out over tasks: at least ~4 per CPU, at most ``UNITS_PER_TASK`` units each."""
    import ray
    import ray.data

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    blocks = max(1, min(len(units), max(4 * cpus, -(-len(units) // UNITS_PER_TASK))))
    per_task = -(-len(units) // blocks)
    ds = ray.data.from_items(units, override_num_blocks=blocks)
    return ds.map_batches(_read_units, fn_kwargs={"min_bytes": cfg.min_bytes, "max_bytes": cfg.max_bytes,
                                                  "block_bytes": docio.BLOCK_BYTES},
                          batch_size=per_task, batch_format="numpy")


def _hf_dataset(src: SourceConfig, cfg: IngestConfig):
    """A Hugging Face dataset (needs the `datasets` package and a network or a local cache)."""
    import ray.data

    try:
        import datasets
    except ImportError:
        raise RuntimeError("ingest: kind=hf needs the `datasets` package (pip install datasets)") from None
    hf = datasets.load_dataset(src.hf_name, split=src.hf_split)
    if src.limit is not None:
        hf = hf.select(range(min(src.limit, len(hf))))
    name = src.name or src.hf_name
    column = src.text_column

    def _rows(batch: pa.Table) -> pa.Table:
        values = batch[column].to_pylist()
        rows = [readers._check_text(v, name, f"{src.hf_name}#{i}", cfg.min_bytes, cfg.max_bytes)
                for i, v in enumerate(values)]
        return pa.Table.from_pylist(rows, schema=_SCHEMA)

    return ray.data.from_huggingface(hf).map_batches(_rows, batch_format="pyarrow")


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    import ray.data

    ic = cfg.ingest
    units = [u for src in ic.sources if src.kind != "hf" for u in source_units(src)]
    parts = [_units_dataset(units, ic)] if units else []
    parts += [_hf_dataset(src, ic) for src in ic.sources if src.kind == "hf"]
    if not parts:
        raise ValueError("ingest: no sources configured")
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
    n_docs, n_bytes = _count_bytes(docio.read_docs(rd, "ingest").select_columns(["n_bytes"]))
    skipped_by_reason = {r: n for r, n in sorted(reasons.items()) if r}
    n_read = sum(reasons.values())
    log.info("ingest: %d documents (%d bytes), skipped %s", n_docs, n_bytes, skipped_by_reason)
    return Manifest(
        stage="ingest",
        rows={"units": len(units), "read": n_read, "documents": n_docs, "skipped": sum(skipped_by_reason.values())},
        metrics={"skipped_by_reason": skipped_by_reason, "document_bytes": n_bytes,
                 "sources": [s.model_dump(mode="json") for s in ic.sources]},
        headline={"documents": n_docs, "skipped": sum(skipped_by_reason.values()), "MB": round(n_bytes / 1e6, 2)},
        outputs=["ingest/documents", "ingest/skipped"],
    )


def _count_bytes(ds) -> tuple[int, int]:
    """(rows, sum of n_bytes) of a dataset, as one Ray aggregate."""
    from ray.data.aggregate import Count, Sum

    if ds.schema() is None:
        return 0, 0
    out = ds.aggregate(Count(), Sum("n_bytes"))
    return int(out["count()"] or 0), int(out["sum(n_bytes)"] or 0)
