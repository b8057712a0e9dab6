"""Reading and writing the run's document datasets with Ray Data (the stages' shared plumbing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import ray.data

    from phiray.rundir import RunDir

DOC_COLUMNS = ("id", "text", "source", "path", "n_bytes")


BLOCK_BYTES = 64 << 20  # in-memory bytes of a block read from a stage's output
MIN_SPREAD_BYTES = 1 << 20  # a spread block is never smaller than this
ROWS_PER_GROUP = 1024  # Parquet row group (a document is one row): not one group per block
FILE_BYTES = 128 << 20  # blocks are coalesced into files of at least this many bytes


def block_bytes(total_bytes: int, spread: bool) -> int:
    """Target in-memory size of a block: ``BLOCK_BYTES``, or with ``spread`` small enough that every CPU
    of the cluster gets ~4 blocks (CPU-heavy per-document work), but never below ``MIN_SPREAD_BYTES``."""
    if not spread:
        return BLOCK_BYTES
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 1
    return int(min(BLOCK_BYTES, max(MIN_SPREAD_BYTES, total_bytes // (4 * cpus))))


def read_docs(
    rd: "RunDir",
    stage: str,
    name: str = "documents",
    spread: bool = False,
    with_position: bool = False,
    target_bytes: int | None = None,
) -> "ray.data.Dataset":
    """``<stage>/<name>/`` of the run as a Ray Dataset; a clear error when the upstream stage left none.

    Files are read by Ray tasks (one per file) with pyarrow on the run's filesystem. We do not use
    ``ray.data.read_parquet`` here: in Ray 2.60 its ListFiles -> ReadFiles chain cost 12-19 s per call on
    this 2-core machine even for a 2 MB dataset (0.5 s this way), and it merges small files into one
    block, which left CPU-heavy per-document work on one core. Blocks are sized by bytes (see
    ``block_bytes``; ``spread`` for per-document CPU work). ``with_position`` adds ``_file`` and
    ``_row`` (where each row lives), so a later pass can re-read a file instead of shuffling its text.
    """
    if not rd.exists(stage, name):
        raise RuntimeError(f"{stage}/{name} not found in {rd.location}: run stage {stage!r} first")
    files = rd.parquet_files(stage, name)
    return read_parquet_files(rd.fs, files, spread=spread, with_position=with_position, target_bytes=target_bytes)


def read_parquet_files(
    fs,
    files: list[str],
    spread: bool = False,
    with_position: bool = False,
    target_bytes: int | None = None,
) -> "ray.data.Dataset":
    """Parquet ``files`` on ``fs`` as a Ray Dataset, read by Ray tasks (one per file) with pyarrow: what
    :func:`read_docs` does for a stage's output, for any list of files (``ray.data.read_parquet`` is not
    used, for the reasons given there)."""
    import ray.data

    if not files:
        return ray.data.from_items([])
    # On-disk (compressed) sizes understate memory 2-4x, which only makes spread blocks more numerous.
    disk_bytes = sum(i.size or 0 for i in fs.get_file_info(files))
    target = target_bytes or block_bytes(disk_bytes, spread)

    def _read(batch: dict):
        for path in batch["file"]:
            table = read_file(fs, str(path), with_position)
            step = max(1, int(target * table.num_rows / max(1, table.nbytes)))
            for start in range(0, max(1, table.num_rows), step):
                yield table.slice(start, step)

    items = ray.data.from_items([{"file": f} for f in files], override_num_blocks=len(files))
    ds = items.map_batches(_read, batch_size=1, batch_format="numpy")
    if not spread:
        return ds
    # Ray fuses this read into the next map (one task, or one actor, per *file*): a streaming repartition
    # between them hands each byte-sized block to the next operator on its own.
    rows = sum(pq.ParquetFile(f, filesystem=fs).metadata.num_rows for f in files)
    return ds.repartition(target_num_rows_per_block=max(1, int(rows * target / max(1, disk_bytes * 3))))


def read_file(fs, path: str, with_position: bool = False) -> pa.Table:
    """One Parquet file of a stage's output (+ ``_file``/``_row`` with ``with_position``)."""
    table = pq.read_table(path, filesystem=fs)
    if with_position:
        table = table.append_column("_file", pa.array([path] * table.num_rows, pa.string()))
        table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    return table


def write_docs(ds: "ray.data.Dataset", rd: "RunDir", stage: str, name: str) -> str:
    """Replace ``<stage>/<name>/`` with the dataset (an empty dataset still leaves the directory): small
    blocks are coalesced into files of ``FILE_BYTES`` with row groups of ``ROWS_PER_GROUP`` rows."""
    rd.remove(stage, name)
    rd.makedirs(stage, name)
    ds.write_parquet(
        rd.path(stage, name), filesystem=rd.fs, min_bytes_per_file=FILE_BYTES, row_group_size=ROWS_PER_GROUP
    )
    return f"{stage}/{name}"


def split_by(
    ds: "ray.data.Dataset", column: str, keep_value: Any = ""
) -> tuple["ray.data.Dataset", "ray.data.Dataset"]:
    """(rows where ``column == keep_value``, the other rows), filtered per block with Arrow."""

    def _keep(table: pa.Table) -> pa.Table:
        return table.filter(pc.equal(table[column], keep_value))

    def _drop(table: pa.Table) -> pa.Table:
        return table.filter(pc.not_equal(table[column], keep_value))

    return (
        ds.map_batches(_keep, batch_format="pyarrow", zero_copy_batch=True),
        ds.map_batches(_drop, batch_format="pyarrow", zero_copy_batch=True),
    )


def drop_columns(ds: "ray.data.Dataset", columns: list[str]) -> "ray.data.Dataset":
    def _drop(table: pa.Table) -> pa.Table:
        return table.drop_columns([c for c in columns if c in table.column_names])

    return ds.map_batches(_drop, batch_format="pyarrow", zero_copy_batch=True)


def value_counts(ds: "ray.data.Dataset", column: str) -> dict[str, int]:
    """{value: rows} for a low-cardinality column: per-block counts made by Ray tasks, summed here (the
    driver sees blocks x distinct values, never the rows; no shuffle, whose aggregator actors cost tens
    of seconds on a small machine)."""
    if _schemaless(ds):
        return {}

    def _count(table: pa.Table) -> pa.Table:
        counts = pc.value_counts(table[column].cast(pa.string()))
        return pa.table({"value": counts.field("values"), "n": counts.field("counts").cast(pa.int64())})

    out: dict[str, int] = {}
    for r in ds.select_columns([column]).map_batches(_count, batch_format="pyarrow", batch_size=None).take_all():
        out[str(r["value"])] = out.get(str(r["value"]), 0) + int(r["n"])
    return out


def count_where(ds: "ray.data.Dataset", column: str, value: Any = "", equal: bool = False) -> int:
    """Rows whose ``column`` is not ``value`` (``equal``: is ``value``): per-block counts, summed."""
    if _schemaless(ds):
        return 0

    def _count(table: pa.Table) -> pa.Table:
        hits = pc.equal(table[column], value) if equal else pc.not_equal(table[column], value)
        return pa.table({"n": pa.array([int(pc.sum(pc.cast(hits, pa.int64())).as_py() or 0)], pa.int64())})

    return column_sum(ds.select_columns([column]).map_batches(_count, batch_format="pyarrow", batch_size=None), "n")


def column_sum(ds: "ray.data.Dataset", column: str) -> int:
    """Sum of a numeric column (0 for an empty dataset), computed by Ray tasks."""
    return int(block_sums(ds, [column])[column])


def block_sums(ds: "ray.data.Dataset", columns: list[str]) -> dict[str, float]:
    """{"rows": rows, column: sum} over the dataset: one row of sums per block made by Ray tasks, added
    up here as they stream in (the driver sees one small row per block). Ray's own ``sum``/``aggregate`` runs a hash
    shuffle whose aggregator actors cost 30+ s per call on a loaded 2-core machine."""
    out: dict[str, float] = {"rows": 0, **{c: 0 for c in columns}}
    if _schemaless(ds):
        return out

    def _sums(table: pa.Table) -> pa.Table:
        sums = {c: [pc.sum(table[c]).as_py() or 0] for c in columns}
        return pa.table({"rows": pa.array([table.num_rows], pa.int64()), **sums})

    for r in ds.select_columns(columns).map_batches(_sums, batch_format="pyarrow", batch_size=None).iter_rows():
        for key in out:
            out[key] += r[key]
    return out


def smallest_by_hash(ds: "ray.data.Dataset", columns: list[str], limit: int, salt: str = "") -> "ray.data.Dataset":
    """The ``limit`` rows with the smallest sha1 of ``salt`` + the columns' values joined by NUL: a
    deterministic sample independent of block order (``limit()`` keeps whichever blocks finish first).
    The cut-off comes from a distributed sort; only that one key reaches the driver."""
    import hashlib

    def _with_key(table: pa.Table) -> pa.Table:
        values = zip(*(table[c].to_pylist() for c in columns))
        keys = [hashlib.sha1((salt + "\0".join(map(str, v))).encode()).hexdigest() for v in values]
        return table.append_column("_key", pa.array(keys, pa.string()))

    if limit <= 0 or _schemaless(ds):
        return ds.limit(0)
    keyed = ds.map_batches(_with_key, batch_format="pyarrow")
    last = keyed.select_columns(["_key"]).sort("_key").limit(limit).max("_key")
    if last is None:
        return ds.limit(0)
    return keyed.filter(expr=f"_key <= '{last}'").drop_columns(["_key"])


def _schemaless(ds: "ray.data.Dataset") -> bool:
    """An empty dataset without columns (``from_items([])``): Ray's aggregates cannot run on it."""
    schema = ds.schema()
    return schema is None or not schema.names
