"""Reading packed token shards inside a training worker, and the deterministic mixture stream.

Why not a streaming Ray Data iterator: the batch of optimizer step ``s`` on rank ``r`` is a pure function
of ``(seed, s, r)`` here, so a worker restarted from a checkpoint at step ``s`` continues with exactly the
batches it would have seen (no repeated or skipped data, nothing to fast-forward), and no Ray Data tasks
compete with the training workers for the CPUs (the 2-CPU hang in RAY_ON_CPU.md).

Yet the shards are streamed, not sampled row by row: each source is read as a sequence of epochs; an
epoch visits the source's Parquet row groups (runs of contiguous packed sequences) in a seeded
permutation, and the rows of a group in a seeded order; the whole run's batches are consecutive slices
of one global stream that interleaves the sources in a fixed pattern matching their weights. A step
therefore reads a few row groups, never a whole file for one row, and the groups of the next batch are
read ahead on a background thread while the model trains on this one.
"""

from __future__ import annotations

import posixpath
import threading
import zlib
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from phiray.data.packing import IGNORE
from phiray.rundir import parquet_files

PATTERN = 1000  # mixture weights are kept to 1/PATTERN: the source interleaving repeats every PATTERN sequences


def _to_matrix(column) -> np.ndarray:
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    return values.reshape(len(arr), -1) if len(arr) else values.reshape(0, 0)


class TokenSource:
    """One packed split (``tokenize/<source>/<split>``): rows by index, read one Parquet row group at a
    time through a small thread-safe LRU of decoded groups."""

    def __init__(self, fs: pafs.FileSystem, path: str, cache_groups: int = 16):
        self.fs, self.path, self.cache_groups = fs, path, cache_groups
        self.files = parquet_files(fs, path)
        groups = []  # (file index, row group index, rows)
        for f, file in enumerate(self.files):
            with fs.open_input_file(file) as handle:
                meta = pq.ParquetFile(handle).metadata
            groups += [(f, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
        groups = [g for g in groups if g[2] > 0]
        self.group_file = np.asarray([g[0] for g in groups], dtype=np.int64)
        self.group_index = np.asarray([g[1] for g in groups], dtype=np.int64)
        self.group_rows = np.asarray([g[2] for g in groups], dtype=np.int64)
        self.group_start = np.concatenate([[0], np.cumsum(self.group_rows)]).astype(np.int64)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.groups_read = 0

    def __len__(self) -> int:
        return int(self.group_start[-1])

    @property
    def n_groups(self) -> int:
        return len(self.group_rows)

    @property
    def name(self) -> str:
        return posixpath.basename(posixpath.dirname(self.path.rstrip("/")))

    def group(self, g: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(input_ids, labels or None) of row group ``g`` (decoded once, then cached)."""
        with self._lock:
            if g in self._cache:
                self._cache.move_to_end(g)
                return self._cache[g]
        with self.fs.open_input_file(self.files[int(self.group_file[g])]) as handle:
            table = pq.ParquetFile(handle).read_row_group(int(self.group_index[g]))
        ids = _to_matrix(table.column("input_ids"))
        labels = _to_matrix(table.column("labels")) if "labels" in table.column_names else None
        with self._lock:
            self.groups_read += 1
            self._cache[g] = (ids, labels)
            while len(self._cache) > self.cache_groups:
                self._cache.popitem(last=False)
        return ids, labels

    def take(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, labels) for global row indices; labels = input_ids where the shard has none."""
        rows = np.asarray(rows, dtype=np.int64)
        groups = np.searchsorted(self.group_start, rows, side="right") - 1
        ids_out, labels_out = [], []
        for row, g in zip(rows.tolist(), groups.tolist()):
            ids, labels = self.group(g)
            local = row - int(self.group_start[g])
            ids_out.append(ids[local])
            labels_out.append(labels[local] if labels is not None else ids[local])
        return np.stack(ids_out), np.stack(labels_out)


class SourceStream:
    """Position ``p`` of a source's endless stream -> row: epoch ``p // len``, row groups in a seeded
    permutation per epoch, rows of a group in a seeded order."""

    def __init__(self, source: TokenSource, seed: int, key: str):
        self.source, self.seed, self.key = source, seed, zlib.crc32(key.encode())
        self._epochs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._inner: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e not in self._epochs:
            order = np.random.default_rng([self.seed, self.key, e]).permutation(self.source.n_groups)
            starts = np.concatenate([[0], np.cumsum(self.source.group_rows[order])])
            self._epochs[e] = (order, starts)
            while len(self._epochs) > 2:
                self._epochs.popitem(last=False)
        return self._epochs[e]

    def rows(self, positions: np.ndarray) -> np.ndarray:
        n = len(self.source)
        out = np.empty(len(positions), dtype=np.int64)
        for i, p in enumerate(np.asarray(positions, dtype=np.int64).tolist()):
            order, starts = self._epoch(p // n)
            idx = p % n
            j = int(np.searchsorted(starts, idx, side="right") - 1)
            g = int(order[j])
            out[i] = self.source.group_start[g] + self._inner_order(p // n, g)[idx - starts[j]]
        return out

    def _inner_order(self, e: int, g: int) -> np.ndarray:
        if (e, g) not in self._inner:
            self._inner[(e, g)] = np.random.default_rng([self.seed, self.key, e, g]).permutation(
                int(self.source.group_rows[g])
            )
            while len(self._inner) > 64:
                self._inner.popitem(last=False)
        return self._inner[(e, g)]


def mixture_weights(sources: dict[str, TokenSource], weights: dict[str, float], by: str = "share") -> dict[str, float]:
    """Normalised sequence shares. ``share``: the weights are the sources' shares of the training tokens;
    ``passes``: the weights are passes over each source (phi-1: N epochs of CodeTextbook), so a source's
    share is its passes times its size."""
    if by not in ("share", "passes"):
        raise ValueError(f"mixture unit must be 'share' or 'passes', not {by!r}")
    raw = {
        n: w * (len(sources[n]) if by == "passes" else 1)
        for n, w in weights.items()
        if w > 0 and n in sources and len(sources[n])
    }
    total = sum(raw.values())
    if not total:
        raise ValueError("no training data: every mixture source is empty or has weight 0")
    return {n: w / total for n, w in raw.items()}


def interleaving(shares: list[float], period: int = PATTERN) -> np.ndarray:
    """Source index of each position of one period: counts by largest remainder, spread evenly."""
    exact = np.asarray(shares, dtype=np.float64) * period
    counts = np.floor(exact).astype(np.int64)
    for k in np.argsort(-(exact - counts), kind="stable")[: period - counts.sum()]:
        counts[k] += 1
    keys = [((i + 0.5) / c, k) for k, c in enumerate(counts.tolist()) for i in range(c)]
    return np.asarray([k for _, k in sorted(keys)], dtype=np.int64)


class MixtureSampler:
    """Micro-batches for (step, micro, rank): consecutive slices of one deterministic global stream.

    Batch ``t = (step * micro_batches + micro) * world + rank`` holds global positions
    ``[t * size, (t + 1) * size)``; a position's source comes from the fixed interleaving and its row
    from that source's stream. Pure in (seed, step, micro, rank), so a resume is exact."""

    def __init__(
        self,
        sources: dict[str, TokenSource],
        weights: dict[str, float],
        seed: int,
        micro_batches: int = 1,
        world: int = 1,
        by: str = "share",
        read_ahead: bool = True,
    ):
        shares = mixture_weights(sources, weights, by)
        self.names = list(shares)
        self.shares = shares
        self.pattern = interleaving([shares[n] for n in self.names])
        self.per_period = np.bincount(self.pattern, minlength=len(self.names))
        # prefix[k][r]: sequences of source k among the first r positions of a period
        self.prefix = np.stack([np.concatenate([[0], np.cumsum(self.pattern == k)]) for k in range(len(self.names))])
        self.streams = {n: SourceStream(sources[n], seed, n) for n in self.names}
        self.sources, self.seed, self.micro_batches, self.world = sources, seed, micro_batches, world
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead") if read_ahead else None
        self._ahead: tuple[int, int, Future] | None = None

    def _index(self, step: int, micro: int, rank: int) -> int:
        if not (0 <= micro < self.micro_batches and 0 <= rank < self.world):
            raise ValueError(
                f"micro {micro} / rank {rank} outside {self.micro_batches} micro-batches x {self.world} ranks"
            )
        return (step * self.micro_batches + micro) * self.world + rank

    def plan(self, t: int, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{source: (slots in the batch, source rows)} of batch ``t``."""
        g = np.arange(t * size, (t + 1) * size, dtype=np.int64)
        period, r = np.divmod(g, len(self.pattern))
        kinds = self.pattern[r]
        out = {}
        for k, name in enumerate(self.names):
            slots = np.nonzero(kinds == k)[0]
            if slots.size:
                positions = period[slots] * self.per_period[k] + self.prefix[k][r[slots]]
                out[name] = (slots, self.streams[name].rows(positions))
        return out

    def _read(self, plan: dict[str, tuple[np.ndarray, np.ndarray]], size: int):
        ids = labels = None
        counts = {}
        for name, (slots, rows) in plan.items():
            i, lab = self.sources[name].take(rows)
            if ids is None:
                ids, labels = np.empty((size, i.shape[1]), np.int64), np.empty((size, i.shape[1]), np.int64)
            ids[slots], labels[slots] = i, lab
            counts[name] = int(slots.size)
        return ids, labels, counts

    def batch(self, step: int, micro: int, rank: int, size: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        t = self._index(step, micro, rank)
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            done = ahead[2].result()  # always waited for: the streams' small caches are not shared
        result = done if ahead is not None and ahead[:2] == (t, size) else self._read(self.plan(t, size), size)
        if self._pool is not None:  # this rank's next batch is t + world: read its row groups meanwhile
            nxt = t + self.world
            self._ahead = (nxt, size, self._pool.submit(lambda: self._read(self.plan(nxt, size), size)))
        return result


def validation_rows(source: TokenSource, n_rows: int, rank: int, world_size: int) -> np.ndarray:
    """This rank's share of the first ``n_rows`` validation rows (fixed: the same every evaluation)."""
    return np.arange(min(n_rows, len(source)))[rank::world_size]


__all__ = ["IGNORE", "MixtureSampler", "TokenSource", "mixture_weights", "validation_rows"]
