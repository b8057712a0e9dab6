"""One pyarrow schema per Parquet stage output: what the stage writes (its columns, and the empty file of an output
with no rows), and what a downstream stage checks before it reads (``require``, and ``run_stage`` for every
declared read).

A stage output is ``<stage>/<name>/`` in the run directory; ``SCHEMAS[(stage, name)]`` is its schema. Every output a
stage declares (``Stage.writes``) is either here or in ``ARTIFACTS`` (models, tokenizers, JSON: not Parquet).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from phiray.rundir import RunDir

PHASES = ("pretrain", "grow", "finetune", "control")

# The corpus as it moves down the pipeline: ingest/documents, then each stage adds the columns it decides on.
_DOC = [("id", pa.string()), ("text", pa.large_string()), ("source", pa.string()), ("path", pa.string())]
_DOC += [("n_bytes", pa.int64())]
INGEST_DOCUMENTS = pa.schema(_DOC)
# What ingest's readers produce before the split: every input with its reason ("" = a document, kept).
INGEST_READ = INGEST_DOCUMENTS.append(pa.field("reason", pa.string()))
# ingest/skipped: a file that was not read, and why (no id or text: it has none).
INGEST_SKIPPED = pa.schema([("source", pa.string()), ("path", pa.string()), ("n_bytes", pa.int64())])
INGEST_SKIPPED = INGEST_SKIPPED.append(pa.field("reason", pa.string()))
DEDUP_DOCUMENTS = INGEST_DOCUMENTS.append(pa.field("dup_of", pa.string()))
DEDUP_REJECTED = DEDUP_DOCUMENTS.append(pa.field("reason", pa.string()))
DECONTAMINATE_DOCUMENTS = DEDUP_DOCUMENTS
DECONTAMINATE_REJECTED = DEDUP_DOCUMENTS.append(pa.field("contaminated_by", pa.string())).append(
    pa.field("reason", pa.string())
)
FILTER_DOCUMENTS = DEDUP_DOCUMENTS.append(pa.field("score", pa.float64())).append(pa.field("kept", pa.bool_()))
FILTER_REJECTED = FILTER_DOCUMENTS.append(pa.field("reason", pa.string()))

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

# tokenize/<source>/{train,val}: fixed-length sequences; exercises_sft adds the labels (-100 outside the answer).
PACKED = pa.schema([("input_ids", pa.list_(pa.int32()))])
PACKED_SFT = PACKED.append(pa.field("labels", pa.list_(pa.int32())))

SCHEMAS: dict[tuple[str, str], pa.Schema] = {
    ("ingest", "documents"): INGEST_DOCUMENTS,
    ("ingest", "skipped"): INGEST_SKIPPED,
    ("dedup", "documents"): DEDUP_DOCUMENTS,
    ("dedup", "rejected"): DEDUP_REJECTED,
    ("decontaminate", "documents"): DECONTAMINATE_DOCUMENTS,
    ("decontaminate", "rejected"): DECONTAMINATE_REJECTED,
    ("annotate", "labels"): ANNOTATE_LABELS,
    ("filter", "documents"): FILTER_DOCUMENTS,
    ("filter", "rejected"): FILTER_REJECTED,
    ("synthesize", "textbooks"): SYNTHESIZE_TEXTBOOKS,
    ("synthesize", "exercises"): SYNTHESIZE_EXERCISES,
    ("synthesize", "validation"): SYNTHESIZE_EXERCISES,
    ("synthesize", "heldout"): SYNTHESIZE_EXERCISES,
    ("synthesize", "rejected"): SYNTHESIZE_REJECTED,
    ("similarity", "exercises"): SYNTHESIZE_EXERCISES,
    ("similarity", "pruned"): SYNTHESIZE_EXERCISES,
    **{("tokenize", name): PACKED for name in ("code", "textbooks", "exercises", "exercises_full", "unfiltered")},
    ("tokenize", "exercises_sft"): PACKED_SFT,
    ("tokenize", "exercises_full_sft"): PACKED_SFT,  # with similarity.prune_tau: every exercise, unpruned
}
# Stage outputs that are not Parquet datasets: what each is.
ARTIFACTS: dict[tuple[str, str], str] = {
    ("annotate", "rejected"): "labels the judge's answer could not be parsed from (Parquet or rejected.json)",
    ("annotate", "cache"): "the LLM judge's request cache (when annotate.cache_dir is unset)",
    ("classify", "model"): "the random forest, its metadata and the labelled sample's embeddings",
    ("synthesize", "cache"): "the teacher's request cache (when synthesize.cache_dir is unset)",
    ("similarity", "pairs.jsonl"): "each HumanEval problem's nearest training exercises",
    ("tokenize", "tokenizer"): "the BPE tokenizer (Hugging Face format)",
    **{(phase, "model"): "the final model, self-contained (Hugging Face format)" for phase in PHASES},
    **{(phase, "checkpoints"): "Ray Train checkpoints (HF weights + DeepSpeed state)" for phase in PHASES},
    **{(phase, "tensorboard"): "TensorBoard events: train records, evaluations" for phase in PHASES},
    ("grow", "init"): "the grown model before training: the step-0 comparison's and the fit's start",
    ("evaluate", "results.json"): "pass@k per model and benchmark",
    ("evaluate", "models"): "per model and benchmark: samples and per-task verdicts (JSONL)",
    ("thesis", "results.json"): "pass@1 per seed and arm, spread and significance",
    ("thesis", "seed-*"): "per seed: the models it trained (<job>/model, done.json) and their per-task verdicts",
    ("sweep", "tune"): "the Ray Tune experiment (restorable)",
    ("sweep", "trials"): "each trial's own files (its checkpoints and records)",
    ("sweep", "space.json"): "the swept points and their budgets (what a resumed sweep must match)",
    ("sweep", "results.csv"): "one row per trial",
    ("sweep", "results.parquet"): "one row per trial (the same table as results.csv, typed)",
    ("sweep", "plot.png"): "the objective of each trial against its mixture",
    ("sweep", "best.yaml"): "the best point as a config overlay",
}


def schema_mismatches(rd: RunDir, stage: str, name: str, first_only: bool = False) -> list[str]:
    """How ``<stage>/<name>``'s files differ from its schema: columns missing or extra, or a type that differs
    (string and large_string count as one, lists by their items). Nothing when the output has no files.
    ``first_only`` reads one file's footer (the runner's check after every stage: one writer wrote them all)."""
    expected = SCHEMAS[(stage, name)]
    problems = []
    files = rd.parquet_files(stage, name)
    for path in files[:1] if first_only else files:
        with rd.fs.open_input_file(path) as handle:
            found = pq.read_schema(handle)
        if set(found.names) != set(expected.names):
            missing, extra = set(expected.names) - set(found.names), set(found.names) - set(expected.names)
            problems.append(f"{stage}/{name}: missing {sorted(missing)}, extra {sorted(extra)}")
        for field in expected:
            if field.name in found.names and _kind(found.field(field.name).type) != _kind(field.type):
                problems.append(f"{stage}/{name}.{field.name}: {found.field(field.name).type}, schema {field.type}")
    return sorted(set(problems))


def _kind(t: pa.DataType) -> str:
    """A type as the contract compares it: string = large_string, and a list by its items (not its field's name)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"list<{_kind(t.value_type)}>"
    return "string" if pa.types.is_string(t) or pa.types.is_large_string(t) else str(t)


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
