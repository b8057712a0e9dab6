"""Reading packed token shards inside a training worker, and the deterministic mixture sampler.

Why not a streaming Ray Data iterator: the batch of optimizer step ``s`` on rank ``r`` is a pure function
of ``(seed, s, r)`` here, so a worker restarted from a checkpoint at step ``s`` continues with exactly the
batches it would have seen (no repeated or skipped data, nothing to fast-forward), mixture weights are
exact per sequence, and no Ray Data tasks compete with the training workers for the CPUs (the 2-CPU hang
in RAY_ON_CPU.md). Shards are the Parquet files the tokenize stage wrote with Ray Data, read with pyarrow
from the run's filesystem (local disk or object store) and cached per file.
"""

from __future__ import annotations

import posixpath
from collections import OrderedDict

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from phiray.data.packing import IGNORE


def _to_matrix(column) -> np.ndarray:
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    return values.reshape(len(arr), -1) if len(arr) else values.reshape(0, 0)


class TokenSource:
    """One packed split (``tokenize/<source>/<split>``): random access by row, per-file LRU cache."""

    def __init__(self, fs: pafs.FileSystem, path: str, cache_files: int = 8):
        self.fs, self.path, self.cache_files = fs, path, cache_files
        info = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        self.files = sorted(i.path for i in info if i.type == pafs.FileType.File and i.path.endswith(".parquet"))
        self.rows = []
        for file in self.files:
            with fs.open_input_file(file) as handle:
                self.rows.append(pq.ParquetFile(handle).metadata.num_rows)
        self.offsets = np.cumsum([0] + self.rows)
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def name(self) -> str:
        return posixpath.basename(posixpath.dirname(self.path.rstrip("/")))

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        file = self.files[index]
        if file not in self._cache:
            with self.fs.open_input_file(file) as handle:
                table = pq.read_table(handle)
            ids = _to_matrix(table.column("input_ids"))
            labels = _to_matrix(table.column("labels")) if "labels" in table.column_names else None
            self._cache[file] = (ids, labels)
            while len(self._cache) > self.cache_files:
                self._cache.popitem(last=False)
        self._cache.move_to_end(file)
        return self._cache[file]

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, labels) for global row indices; labels = input_ids where the shard has none."""
        file_idx = np.searchsorted(self.offsets, rows, side="right") - 1
        ids_out, labels_out = [], []
        for row, f in zip(rows.tolist(), file_idx.tolist()):
            ids, labels = self._load(f)
            local = row - int(self.offsets[f])
            ids_out.append(ids[local])
            labels_out.append(labels[local] if labels is not None else ids[local])
        return np.stack(ids_out), np.stack(labels_out)


class MixtureSampler:
    """Micro-batches for (step, micro, rank): each sequence's source drawn by weight, its row uniformly."""

    def __init__(self, sources: dict[str, TokenSource], weights: dict[str, float], seed: int):
        self.names = [n for n in sources if weights.get(n, 0) > 0 and len(sources[n])]
        if not self.names:
            raise ValueError("no training data: every mixture source is empty or has weight 0")
        w = np.asarray([weights[n] for n in self.names], dtype=np.float64)
        self.probs = w / w.sum()
        self.sources, self.seed = sources, seed

    def batch(self, step: int, micro: int, rank: int, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        rng = np.random.default_rng([self.seed, step, micro, rank])
        choice = rng.choice(len(self.names), size=size, p=self.probs)
        parts_ids, parts_labels, order, counts = [], [], [], {}
        for k, name in enumerate(self.names):
            where = np.nonzero(choice == k)[0]
            if not where.size:
                continue
            rows = rng.integers(0, len(self.sources[name]), size=where.size)
            i, lab = self.sources[name].take(rows)
            parts_ids.append(i)
            parts_labels.append(lab)
            order.append(where)
            counts[name] = int(where.size)
        perm = np.argsort(np.concatenate(order))
        ids = np.concatenate(parts_ids)[perm]
        labels = np.concatenate(parts_labels)[perm]
        return ids, labels, counts


def validation_rows(source: TokenSource, n_rows: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of the first ``n_rows`` validation rows (fixed: the same every evaluation)."""
    return np.arange(min(n_rows, len(source)))[rank::world_size]


__all__ = ["IGNORE", "MixtureSampler", "TokenSource", "validation_rows"]
