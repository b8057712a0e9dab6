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


def _read_batch(batch: dict, min_bytes: int, max_bytes: int) -> pa.Table:
    rows = []
    for i in range(len(batch["path"])):
        unit = {k: str(batch[k][i]) for k in ("kind", "path", "source", "text_column")}
        rows.extend(readers.read_unit(unit, min_bytes, max_bytes))
    return pa.Table.from_pylist(rows, schema=_SCHEMA)


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


def _first_documents(accepted, limit: int):
    """A deterministic subset of ``limit`` documents (Ray Data does not keep block order, so ``limit()``
    would pick whichever blocks finished first): the smallest by hash of (path, id), which spreads over
    the whole corpus."""
    import pyarrow.compute as pc

    keys = [(hashlib.sha1(f"{p}\0{i}".encode()).hexdigest(), p, i)
            for b in accepted.select_columns(["path", "id"]).iter_batches(batch_format="pyarrow", batch_size=None)
            for p, i in zip(b["path"].to_pylist(), b["id"].to_pylist())]
    chosen = pa.array(sorted(f"{p}\0{i}" for _, p, i in sorted(keys)[:limit]), pa.string())

    def _keep(table: pa.Table) -> pa.Table:
        joined = pc.binary_join_element_wise(table["path"], table["id"], "\0")
        return table.filter(pc.is_in(joined, value_set=chosen))

    return accepted.map_batches(_keep, batch_format="pyarrow")


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    import ray.data

    ic = cfg.ingest
    units = [u for src in ic.sources if src.kind != "hf" for u in source_units(src)]
    parts = []
    if units:
        ds = ray.data.from_items(units, override_num_blocks=max(1, min(len(units) // 20, 64)))
        parts.append(ds.map_batches(_read_batch, fn_kwargs={"min_bytes": ic.min_bytes, "max_bytes": ic.max_bytes},
                                    batch_size=20, batch_format="numpy"))
    parts += [_hf_dataset(src, ic) for src in ic.sources if src.kind == "hf"]
    if not parts:
        raise ValueError("ingest: no sources configured")
    read = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    read = read.materialize()  # counted and split below: read every file once
    reasons = docio.value_counts(read, "reason")
    accepted, skipped = docio.split_by(read, "reason", "")
    if ic.max_documents is not None:
        accepted = _first_documents(accepted, ic.max_documents)
    accepted = docio.drop_columns(accepted, ["reason"]).materialize()
    docio.write_docs(accepted, rd, "ingest", "documents")
    docio.write_docs(docio.drop_columns(skipped, ["id", "text"]), rd, "ingest", "skipped")
    n_docs = accepted.count()
    n_bytes = sum(int(pa.compute.sum(b["n_bytes"]).as_py() or 0)
                  for b in accepted.iter_batches(batch_format="pyarrow", batch_size=None))
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
