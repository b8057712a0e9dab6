"""tokenize: build the tokenizer, then pack every token source into fixed-length sequences.

Sources (a missing upstream output is counted and skipped with a warning, never a crash):
``code`` <- filter/documents (rows with ``kept`` when the column exists), ``textbooks`` <- synthesize/textbooks,
``exercises`` <- synthesize/exercises (``verified`` rows; also packed as ``exercises_sft``: prompt ->
completion with labels -100 on the prompt), ``unfiltered`` <- decontaminate/documents, plus
``tokenize.extra_sources``. Each becomes ``tokenize/<source>/{train,val}/`` (Parquet via Ray Data, column
``input_ids``: list<int32> of ``seq_len``; ``labels`` too for ``exercises_sft``); validation is a seeded
document-level split. The tokenizer is saved in HF format at ``tokenize/tokenizer/``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from phiray import progress
from phiray.config import RunConfig
from phiray.data import docio
from phiray.data.packing import PackBatch, in_validation
from phiray.model.tokenizer import build_tokenizer
from phiray.rundir import Manifest, RunDir, parquet_files
from phiray.train.data import TokenSource

log = logging.getLogger("phiray")

BUILTIN = {
    "code": "filter/documents",
    "textbooks": "synthesize/textbooks",
    "exercises": "synthesize/exercises",
    "unfiltered": "decontaminate/documents",
}
# The tokenizer is trained on what the model is pretrained on (not on the unfiltered control corpus).
BPE_SOURCES = ("code", "textbooks", "exercises")
PRUNED = ("similarity", "exercises")  # the train exercises less those pruned at similarity.prune_tau
SFT_SOURCES = ("exercises", "exercises_full")  # also packed prompt -> completion as <name>_sft


def resolve_sources(cfg: RunConfig, rd: RunDir) -> tuple[dict[str, tuple[pafs.FileSystem, str]], list[str]]:
    """name -> (filesystem, path) of every source that exists; the names of those that do not."""
    found: dict[str, tuple[pafs.FileSystem, str]] = {}
    wanted: dict[str, tuple[pafs.FileSystem, str]] = {n: (rd.fs, rd.path(BUILTIN[n])) for n in cfg.tokenize.sources}
    if "exercises" in wanted and cfg.similarity.prune_tau is not None:
        # phi-1 §5: retrain on the exercises less those close to a HumanEval problem (similarity's output);
        # the whole set stays as exercises_full (its finetune is the "without pruning" arm of the thesis)
        if not rd.exists(*PRUNED):
            raise FileNotFoundError(
                f"tokenize: similarity.prune_tau={cfg.similarity.prune_tau} but {'/'.join(PRUNED)} is missing: "
                "run similarity first (it writes the pruned exercises)"
            )
        wanted["exercises_full"] = wanted["exercises"]
        wanted["exercises"] = (rd.fs, rd.path(*PRUNED))
    for name, location in cfg.tokenize.extra_sources.items():
        if rd.exists(location):
            wanted[name] = (rd.fs, rd.path(location))
        elif "://" in location:
            wanted[name] = pafs.FileSystem.from_uri(location)
        else:
            wanted[name] = (pafs.LocalFileSystem(), os.path.abspath(location))
    skipped = []
    for name, (fs, path) in wanted.items():
        if parquet_files(fs, path):
            found[name] = (fs, path)
        else:
            log.warning("tokenize: source %r has no Parquet at %s (skipped)", name, path)
            skipped.append(name)
    return found, skipped


def _columns(fs: pafs.FileSystem, path: str) -> tuple[list[str], int]:
    """Column names and row count from Parquet metadata (no Ray Data execution needed)."""
    files = parquet_files(fs, path)
    with fs.open_input_file(files[0]) as handle:
        names = pq.ParquetFile(handle).schema_arrow.names
    rows = 0
    for file in files:
        with fs.open_input_file(file) as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    return names, rows


def _usable(table):
    """Rows worth training on: kept code (when filter marks them), verified exercises, non-empty text."""
    import pyarrow.compute as pc

    mask = pc.invert(pc.is_null(table.column("text")))
    for flag in ("kept", "verified"):
        if flag in table.column_names:
            mask = pc.and_(mask, pc.fill_null(table.column(flag), False))
    return table.filter(mask)


def _read(name: str, fs: pafs.FileSystem, path: str):
    """The source as a Ray Data dataset (``text`` is required)."""
    columns, _ = _columns(fs, path)
    if "text" not in columns:
        raise ValueError(f"tokenize: source {name!r} at {path} has no `text` column (columns: {sorted(columns)})")
    return docio.read_parquet_files(fs, parquet_files(fs, path))


def _texts(sources: dict[str, tuple[pafs.FileSystem, str]], max_chars: int) -> Iterator[str]:
    """Texts for BPE training (read on the driver, where the trainer runs): the pretraining sources,
    an equal share of ``max_chars`` characters each."""
    names = [n for n in sources if n in BPE_SOURCES] or list(sources)
    budget = max_chars // max(1, len(names))
    for name in names:
        fs, path = sources[name]
        used = 0
        for file in parquet_files(fs, path):
            with fs.open_input_file(file) as handle:
                table = _usable(pq.read_table(handle))
            for text in table.column("text").to_pylist():
                if used >= budget:
                    break
                used += len(text)
                yield text
            if used >= budget:
                break


def _tokenizer_files(tokenizer) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


class _SplitPack:
    """Ray Data batch function: usable rows, seeded train/val split, tokenize + pack each side; a ``split``
    column routes the rows (the tokenizer travels as file bytes: workers need no run-dir access for it)."""

    def __init__(self, files: dict[str, bytes], seq_len: int, mode: str, val_fraction: float, seed: int):
        self.files, self.seq_len, self.mode = files, seq_len, mode
        self.val_fraction, self.seed = val_fraction, seed
        self._pack: PackBatch | None = None

    def __call__(self, batch):
        import hashlib

        import pyarrow as pa

        if self._pack is None:
            digest = hashlib.sha256(b"".join(self.files[k] for k in sorted(self.files))).hexdigest()[:16]
            local = Path(tempfile.gettempdir()) / f"phiray-tokenizer-{digest}"
            if not local.exists():
                staging = Path(tempfile.mkdtemp(prefix="phiray-tok-"))
                for name, data in self.files.items():
                    (staging / name).write_bytes(data)
                try:
                    os.replace(staging, local)
                except OSError:  # another task on this node won the race: its copy is identical
                    pass
            self._pack = PackBatch(str(local), self.seq_len, self.mode)
        batch = _usable(batch)
        texts = batch.column("text").to_pylist()
        ids = batch.column("id").to_pylist() if "id" in batch.column_names else texts
        is_val = [in_validation(str(i), self.val_fraction, self.seed) for i in ids]
        parts = []
        for split, want in (("train", False), ("val", True)):
            packed = self._pack(batch.filter(pa.array([v == want for v in is_val], type=pa.bool_())))
            parts.append(packed.append_column("split", pa.array([split] * packed.num_rows, type=pa.string())))
        return pa.concat_tables(parts)


def move_dir(rd: RunDir, source: str, target: str) -> None:
    """Move a folder of the run dir: a rename on a local disk; a copy on an object store, which renames
    no folders (S3: CopyObject of the prefix fails with NO_SUCH_KEY); the caller removes the source."""
    if rd.is_local:
        rd.fs.move(rd.path(source), rd.path(target))
    else:
        pafs.copy_files(rd.path(source), rd.path(target), source_filesystem=rd.fs, destination_filesystem=rd.fs)


def pack_source(
    ds, rd: RunDir, out: str, files: dict[str, bytes], cfg: RunConfig, mode: str, n_docs: int | None = None
) -> dict[str, int]:
    """One Ray Data pass: tokenize, split, pack, write ``out/train`` and ``out/val``; sequence counts."""
    fn = _SplitPack(files, cfg.tokenize.seq_len, mode, cfg.tokenize.val_fraction, cfg.run.seed)
    tracker = progress.track(f"tokenize {out.rsplit('/', 1)[-1]}", n_docs, "documents")
    packed = tracker.count(ds).map_batches(
        fn, batch_format="pyarrow", batch_size=cfg.tokenize.batch_size, zero_copy_batch=False
    )
    staging = f"{out}/_by_split"
    # Row groups of 256 sequences: the training loader reads one group at a time (phiray.train.data).
    with tracker:
        packed.write_parquet(rd.path(staging), filesystem=rd.fs, partition_cols=["split"], row_group_size=256)
    counts = {}
    for split in ("train", "val"):
        if rd.exists(staging, f"split={split}"):
            move_dir(rd, f"{staging}/split={split}", f"{out}/{split}")
        counts[split] = len(TokenSource(rd.fs, rd.path(out, split))) if rd.exists(out, split) else 0
    rd.remove(staging)
    return counts


def train_tokenizer(cfg: RunConfig, rd: RunDir, sources: dict[str, tuple[pafs.FileSystem, str]]):
    """The run's tokenizer (BPE trained on ``sources``' texts, or a pretrained one), saved to tokenize/tokenizer."""
    texts = _texts(sources, cfg.tokenizer.train_max_chars) if cfg.tokenizer.kind == "bpe" else None
    tokenizer = build_tokenizer(
        cfg.tokenizer.kind,
        cfg.tokenizer.vocab_size,
        texts,
        cfg.tokenizer.name_or_path,
        model_max_length=cfg.tokenize.seq_len,
    )
    with rd.local_dir("tokenize/tokenizer") as local:
        tokenizer.save_pretrained(local)
    return tokenizer


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Build the tokenizer, then pack each source present into train/val sequences under tokenize/<source>/."""
    sources, skipped = resolve_sources(cfg, rd)
    if not sources:
        raise RuntimeError(
            "tokenize: no token source found (run filter/synthesize/decontaminate first, "
            "or name tokenize.extra_sources)"
        )
    for name in rd.listdir("tokenize"):
        if name != "_manifest.json":
            rd.remove("tokenize", name)
    tokenizer = train_tokenizer(cfg, rd, sources)
    files = _tokenizer_files(tokenizer)
    seq_len = cfg.tokenize.seq_len
    stats: dict[str, Any] = {}
    for name, (fs, path) in sources.items():
        ds = _read(name, fs, path)
        columns, n_docs = _columns(fs, path)
        stats[name] = {"documents": n_docs, **pack_source(ds, rd, f"tokenize/{name}", files, cfg, "stream", n_docs)}
        if name in SFT_SOURCES:
            has_pairs = {"prompt", "solution"} <= set(columns)
            if has_pairs:
                stats[f"{name}_sft"] = {
                    "documents": n_docs,
                    **pack_source(ds, rd, f"tokenize/{name}_sft", files, cfg, "examples", n_docs),
                }
            else:
                log.warning("tokenize: %s have no prompt/solution columns; %s_sft skipped", name, name)
                skipped.append(f"{name}_sft")
    for entry in stats.values():
        entry["train_tokens"] = entry.get("train", 0) * seq_len
        entry["val_tokens"] = entry.get("val", 0) * seq_len
    outputs = ["tokenize/tokenizer"] + [
        f"tokenize/{n}/{s}" for n in stats for s in ("train", "val") if rd.exists("tokenize", n, s)
    ]
    return Manifest(
        stage="tokenize",
        rows={f"{n}_{s}_sequences": e.get(s, 0) for n, e in stats.items() for s in ("train", "val")},
        metrics={
            "sources": stats,
            "skipped_sources": skipped,
            "seq_len": seq_len,
            "tokenizer_kind": cfg.tokenizer.kind,
            "tokenizer_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
        },
        headline={
            "train_tokens": sum(e["train_tokens"] for e in stats.values()),
            "sources": len(stats),
            "skipped": len(skipped),
            "vocab": len(tokenizer),
        },
        outputs=outputs,
    )
