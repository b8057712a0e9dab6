"""Hugging Face ``datasets`` as an ingest source (``ingest.sources[].kind=hf``), read by Ray tasks.

A source names a Hub dataset (``bigcode/the-stack-dedup``), a local dataset directory, a directory that
``save_to_disk`` wrote, or a builder (``json``, ``parquet``, ``csv``, ``text``) over ``data_files``.
The driver only opens it (a map-style split is memory-mapped Arrow in the datasets cache; a streaming one
is a list of files) and checks its columns; Ray tasks read it, a row range or a file shard each, and
turn every row into a document row (or a skip row with its reason), like ingest's other readers.

Why not ``ray.data.from_huggingface`` (Ray 2.60): for a map-style Dataset it calls
``from_arrow(dataset[:])``, which copies the whole split into the object store from the driver, and
for either kind it first asks the Hub's parquet API over HTTP (``requests.get``, whose connection error
it does not catch: an offline run fails); an IterableDataset is then read by one task. Here a split is
read by many tasks, each opening the memory-mapped files or its own file shards.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa

from phiray.data import readers

if TYPE_CHECKING:
    import ray.data

    from phiray.config import SourceConfig
    from phiray.progress import RowCounter

log = logging.getLogger("phiray")

ROWS_PER_BATCH = 1024  # rows converted at a time inside a read task
ROWS_PER_TASK_MAX = 50_000  # a map-style split is cut into ranges of at most this many rows
TASKS_PER_CPU = 4


@dataclass(frozen=True)
class RowSpec:
    """How one source's rows become documents (crosses the Ray boundary with the read tasks)."""

    label: str
    text_column: str
    path_column: str | None
    language_column: str | None
    languages: frozenset[str] | None
    min_bytes: int
    max_bytes: int


def dataset_of(src: "SourceConfig") -> str:
    """The dataset a kind=hf source reads (``dataset``, else ``name``)."""
    return str(src.dataset or src.name)


def is_saved_dataset(path: str) -> bool:
    """A directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, f)) for f in ("state.json", "dataset_dict.json")
    )


def open_split(src: "SourceConfig", where: str):
    """The configured split as a ``datasets.Dataset`` or, with ``streaming``, an ``IterableDataset``;
    a ValueError naming the source when it cannot be opened (unknown dataset offline, unknown split, ...)."""
    try:
        import datasets
    except ImportError:
        raise RuntimeError(f"{where}: kind=hf needs the `datasets` package (pip install datasets)") from None
    name = dataset_of(src)
    try:
        if is_saved_dataset(name):
            ds = datasets.load_from_disk(name)
            if isinstance(ds, datasets.DatasetDict):
                if src.split not in ds:
                    raise ValueError(f"no split {src.split!r}; the directory holds {sorted(ds)}")
                ds = ds[src.split]
            if src.streaming:
                ds = ds.to_iterable_dataset(num_shards=max(1, len(ds.cache_files)))
        else:
            ds = datasets.load_dataset(
                name,
                src.subset,
                split=src.split,
                data_files=src.data_files,
                data_dir=src.data_dir,
                revision=src.revision,
                streaming=src.streaming,
            )
    except Exception as err:  # noqa: BLE001 - datasets raises many types; all mean "this source cannot be read"
        # datasets meets empty inputs with a bare IndexError / StopIteration: say what they usually mean.
        detail = f"{type(err).__name__}: {err}" if str(err) else f"{type(err).__name__} (no rows or files to read?)"
        raise ValueError(
            f"{where} (kind=hf, dataset {name!r}, split {src.split!r}) cannot be opened: {detail}"
        ) from err
    if src.limit is not None:
        ds = ds.take(src.limit) if src.streaming else ds.select(range(min(src.limit, len(ds))))
    return ds


def check_columns(ds: Any, src: "SourceConfig", where: str) -> None:
    """Refuse an empty split or one without the configured columns, before any row is read."""
    streaming = not hasattr(ds, "num_rows")
    if not streaming and ds.num_rows == 0:
        raise ValueError(f"{where} (kind=hf, dataset {dataset_of(src)!r}): split {src.split!r} is empty")
    names = list(ds.column_names or [])
    if streaming:  # a streaming split may not know its columns, nor whether it is empty, until it is read
        first = next(iter(ds.take(1)), None)
        if first is None:
            raise ValueError(f"{where} (kind=hf, dataset {dataset_of(src)!r}): split {src.split!r} is empty")
        names = names or list(first)
    wanted = [c for c in (src.text_column, src.path_column, src.language_column) if c]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(
            f"{where} (kind=hf, dataset {dataset_of(src)!r}): no column {', '.join(missing)} "
            f"(columns: {', '.join(names)}); set text_column / path_column / language_column"
        )


def known_rows(ds: Any, src: "SourceConfig") -> int | None:
    """Rows the source will yield when known without reading it (map-style, or a Hub split's metadata)."""
    if hasattr(ds, "num_rows"):
        return int(ds.num_rows)
    splits = getattr(getattr(ds, "info", None), "splits", None) or {}
    info = splits.get(src.split) if hasattr(splits, "get") else None
    rows = getattr(info, "num_examples", None)
    if not rows:
        return None
    return min(int(rows), src.limit) if src.limit is not None else int(rows)


def to_documents(table: pa.Table, spec: RowSpec, positions: list[str]) -> list[dict]:
    """Document rows (or skip rows with their reason) for one batch of a split."""
    texts = table.column(spec.text_column).to_pylist()
    paths = table.column(spec.path_column).to_pylist() if spec.path_column else positions
    langs = table.column(spec.language_column).to_pylist() if spec.languages else None
    rows = []
    for i, text in enumerate(texts):
        path = str(paths[i]) if paths[i] is not None else positions[i]
        if langs is not None and str(langs[i] or "").lower() not in spec.languages:
            rows.append(readers.record("", spec.label, path, 0, "language"))
        else:
            rows.append(readers.check_text(text, spec.label, path, spec.min_bytes, spec.max_bytes))
    return rows


def _columns(spec: RowSpec) -> list[str]:
    return list(
        dict.fromkeys(
            c for c in (spec.text_column, spec.path_column, spec.language_column if spec.languages else None) if c
        )
    )


def _read_ranges(batch: dict, ds, spec: RowSpec, schema: pa.Schema, counter: "RowCounter | None"):
    """Row ranges of a map-style split (memory-mapped: each task reads only its rows)."""
    table_view = ds.select_columns(_columns(spec)).with_format("arrow")
    for start, stop in zip(batch["start"], batch["stop"]):
        for lo in range(int(start), int(stop), ROWS_PER_BATCH):
            hi = min(int(stop), lo + ROWS_PER_BATCH)
            rows = to_documents(table_view[lo:hi], spec, [f"{spec.label}#{r}" for r in range(lo, hi)])
            if counter is not None:
                counter.add(len(rows))
            yield pa.Table.from_pylist(rows, schema=schema)


def _read_shards(batch: dict, ds, spec: RowSpec, schema: pa.Schema, counter: "RowCounter | None"):
    """File shards of a streaming split (each shard is iterated by the task that owns it)."""
    for shard, n_shards in zip(batch["shard"], batch["n_shards"]):
        part = ds.shard(num_shards=int(n_shards), index=int(shard)) if int(n_shards) > 1 else ds
        for rows in _shard_documents(part.select_columns(_columns(spec)), spec, int(shard)):
            if counter is not None:
                counter.add(len(rows))
            yield pa.Table.from_pylist(rows, schema=schema)


def _shard_documents(part, spec: RowSpec, shard: int) -> Iterator[list[dict]]:
    """Document rows of one shard, a batch at a time; a file that fails to parse ends its shard with one
    ``corrupt`` skip row (what was read before it is kept) instead of failing the stage."""
    row = 0
    batches = _arrow_batches(part)
    while True:
        try:
            table = next(batches)
        except StopIteration:
            return
        except Exception as err:  # noqa: BLE001 - datasets/pyarrow raise many types for a corrupt file
            log.warning(
                "%s shard %d: unreadable after row %d (%s: %s)", spec.label, shard, row, type(err).__name__, err
            )
            yield [readers.record("", spec.label, f"{spec.label}#{shard}:{row}", 0, "corrupt")]
            return
        positions = [f"{spec.label}#{shard}:{r}" for r in range(row, row + table.num_rows)]
        row += table.num_rows
        yield to_documents(table, spec, positions)


def _arrow_batches(ds) -> Iterator[pa.Table]:
    for batch in ds.with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
        yield batch if isinstance(batch, pa.Table) else pa.Table.from_pydict(batch)


def read_split(
    ds: Any, spec: RowSpec, schema: pa.Schema, cpus: int, counter: "RowCounter | None" = None, one_shard: bool = False
) -> "ray.data.Dataset":
    """The split as document rows on Ray Data: row ranges (map-style) or file shards (streaming; a
    streaming split cut by ``limit`` is one shard: the first rows in order, read by one task)."""
    import ray.data

    kwargs = {"ds": ds, "spec": spec, "schema": schema, "counter": counter}
    if hasattr(ds, "num_rows"):
        n = int(ds.num_rows)
        tasks = max(1, min(n, max(TASKS_PER_CPU * cpus, -(-n // ROWS_PER_TASK_MAX))))
        step = -(-n // tasks)
        units = [{"start": lo, "stop": min(n, lo + step)} for lo in range(0, n, step)]
        fn = _read_ranges
    else:
        n_shards = 1 if one_shard else max(1, int(getattr(ds, "num_shards", None) or getattr(ds, "n_shards", 1)))
        units = [{"shard": i, "n_shards": n_shards} for i in range(n_shards)]
        fn = _read_shards
    items = ray.data.from_items(units, override_num_blocks=len(units))
    return items.map_batches(fn, fn_kwargs=kwargs, batch_size=1, batch_format="numpy")
