"""One pyarrow schema per stage output: what the stage writes (its columns, and the empty file of an output
with no rows), and what a downstream stage checks before it reads (``require``).

A stage output is ``<stage>/<name>/`` in the run directory; ``SCHEMAS[(stage, name)]`` is its schema.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from phiray.rundir import RunDir

# ingest/documents and ingest/skipped (a skipped file keeps its reason; a document's is empty).
INGEST_DOCUMENTS = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.large_string()),
        ("source", pa.string()),
        ("path", pa.string()),
        ("n_bytes", pa.int64()),
        ("reason", pa.string()),
    ]
)

# annotate/labels: one educational-value label per sampled document.
ANNOTATE_LABELS = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.large_string()),
        ("score", pa.int64()),
        ("reason", pa.string()),
        ("annotator", pa.string()),
        ("model", pa.string()),
        ("round", pa.int64()),
    ]
)
# The LLM annotator's per-request accounting, beside a label while the stage runs (not written out).
ANNOTATE_ACCOUNTING = pa.schema(
    [
        ("cached", pa.bool_()),
        ("attempts", pa.int64()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
        ("error", pa.string()),
    ]
)

_S, _I = pa.string(), pa.int64()
SYNTHESIZE_TEXTBOOKS = pa.schema(
    [("id", _S), ("kind", _S), ("topic", _S), ("subtopic", _S), ("concept", _S), ("audience", _S), ("style", _S)]
    + [("seed", _I), ("text", _S)]
)
# synthesize/exercises (train), validation and heldout: one verified exercise per row.
SYNTHESIZE_EXERCISES = pa.schema(
    [("id", _S), ("kind", _S), ("topic", _S), ("concept", _S), ("audience", _S), ("style", _S), ("seed", _I)]
    + [("difficulty", _I), ("prompt", _S), ("solution", _S), ("tests", _S), ("entry_point", _S)]
    + [("signature", _S), ("docstring", _S), ("text", _S), ("verified", pa.bool_())]
)
SYNTHESIZE_REJECTED = pa.schema(
    [("key", _S), ("kind", _S), ("topic", _S), ("concept", _S), ("audience", _S), ("style", _S), ("seed", _I)]
    + [("reason", _S), ("contaminated_by", _S), ("raw", _S), ("text", _S)]
)

SCHEMAS: dict[tuple[str, str], pa.Schema] = {
    ("ingest", "documents"): INGEST_DOCUMENTS,
    ("ingest", "skipped"): INGEST_DOCUMENTS,
    ("annotate", "labels"): ANNOTATE_LABELS,
    ("synthesize", "textbooks"): SYNTHESIZE_TEXTBOOKS,
    ("synthesize", "exercises"): SYNTHESIZE_EXERCISES,
    ("synthesize", "validation"): SYNTHESIZE_EXERCISES,
    ("synthesize", "heldout"): SYNTHESIZE_EXERCISES,
    ("synthesize", "rejected"): SYNTHESIZE_REJECTED,
    ("similarity", "exercises"): SYNTHESIZE_EXERCISES,
    ("similarity", "pruned"): SYNTHESIZE_EXERCISES,
}


def write_empty(rd: RunDir, stage: str, name: str) -> None:
    """An output with no rows as one empty Parquet file with its schema (Ray Data writes no file for none)."""
    rd.makedirs(stage, name)
    pq.write_table(SCHEMAS[(stage, name)].empty_table(), rd.path(stage, name, "empty.parquet"), filesystem=rd.fs)


def require(rd: RunDir, stage: str, name: str, columns: list[str] | None = None) -> None:
    """Fail clearly, before a downstream stage reads ``<stage>/<name>``, when it is missing or lacks ``columns``
    (default: every column of its schema), e.g. a run directory written by an older phiray."""
    files = rd.parquet_files(stage, name)
    if not files:
        raise FileNotFoundError(f"{stage}/{name} has no Parquet files in {rd.location}: run stage {stage!r}")
    with rd.fs.open_input_file(files[0]) as handle:
        present = set(pq.read_schema(handle).names)
    wanted = SCHEMAS[(stage, name)].names if columns is None else columns
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ValueError(f"{stage}/{name} lacks column(s) {', '.join(missing)}: re-run stage {stage!r}")
