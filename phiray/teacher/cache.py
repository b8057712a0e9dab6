"""Persistent request cache: JSONL shards in a directory on any ``pyarrow.fs`` filesystem.

The cache lives in the run directory (``<run>/<stage>/cache``), local or ``s3://``/``gs://``, so a
killed job loses nothing already written and every node sees what the others wrote.

Each writer (a process, or a teacher in it) owns its shards, so concurrent Ray actors on many nodes
never write the same file. On a local disk a writer appends to one shard and flushes every answer the
moment it arrives. On an object store a file cannot be appended to: a writer buffers answers and
a flusher thread puts them as a new immutable object ``<writer>-<seq>.jsonl`` when ``flush_every`` are
waiting or ``flush_interval_s`` after the first, whichever comes first (group commit: one put carries
every answer that arrived meanwhile), and whenever the teacher finishes a batch (:meth:`flush`). While
``flush_every`` answers are buffered or being put, :meth:`put` holds its caller until the put lands, so a
kill loses at most ``flush_every`` answers (the OpenAI teacher sets it to its concurrency) and at most
``flush_interval_s`` of them (tests/test_cache_kill_bound.py measures it). Reading indexes the union of all shards; a
torn last line (a kill in the middle of a local write) is skipped. Only successful answers are stored: failures are retried next time.
:meth:`compact` merges the shards into one when no writer is left (a stage's success).

Memory holds only the index (hash -> shard, offset, length), never the answers: at phi-1 scale (~2M
answers of several KB) each generation actor would otherwise hold gigabytes. A hit reads its one line
(a ranged read on an object store).
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import threading
import time
import uuid
import weakref
from typing import Any, Iterator

import pyarrow.fs as pafs

from phiray.rundir import FsPath, resolve_fs_path


class RequestCache:
    def __init__(
        self, directory: str | os.PathLike[str] | FsPath, flush_every: int = 256, flush_interval_s: float = 0.2
    ):
        self.fs, self.dir = resolve_fs_path(directory)
        self.fs.create_dir(self.dir, recursive=True)
        # Appending is safe only where the file system appends for real (a local disk).
        self.appends = isinstance(self.fs, pafs.LocalFileSystem)
        self.flush_every, self.flush_interval_s = flush_every, flush_interval_s
        self._writer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._index: dict[str, tuple[str, int, int]] = {}  # hash -> (shard, offset, length)
        self._loaded_shards: dict[str, int] = {}
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._shard: str | None = None  # the shard this writer appends to (local disk)
        self._pending: dict[str, bytes] = {}  # answers not yet put (object store): key -> line
        self._pending_since = 0.0
        self._wake = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)  # a put finished: room for more buffered answers
        self._putting = 0  # answers in the put under way (object store)
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stopping = False
        self._seq = 0
        self.torn_lines = 0
        self.flushes = 0
        self.reload()

    # ----------------------------------------------------------------- reading
    def _shards(self) -> list[pafs.FileInfo]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.dir, allow_not_found=True))
        return sorted(
            (i for i in infos if i.type == pafs.FileType.File and i.path.endswith(".jsonl")), key=lambda i: i.path
        )

    def reload(self) -> None:
        """Index answers other writers stored since the last look (shards only grow or appear)."""
        for info in self._shards():
            name = posixpath.basename(info.path)
            start = self._loaded_shards.get(name, 0)
            if name == self._shard or info.size is None or info.size <= start:
                continue  # our own shard is indexed as we write it
            end = start
            for offset, line in _lines(self.fs, info.path, start, info.size):
                end = offset + len(line)
                try:
                    key = json.loads(line)["hash"]
                    with self._lock:
                        self._index[key] = (name, offset, len(line))
                except (ValueError, KeyError, TypeError):
                    self.torn_lines += 1
            self._loaded_shards[name] = end

    def __len__(self) -> int:
        return len(self._index) + sum(1 for k in list(self._pending) if k not in self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index or key in self._pending

    def get(self, key: str) -> dict[str, Any] | None:
        where = self._index.get(key)
        if where is None:
            line = self._pending.get(key)
            return json.loads(line) if line is not None else None
        shard, offset, length = where
        with self.fs.open_input_file(posixpath.join(self.dir, shard)) as fh:
            return json.loads(fh.read_at(length, offset))

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every stored answer once (the union of the shards), read shard by shard."""
        self.reload()
        seen: set[str] = set()
        for info in self._shards():
            for _, line in _lines(self.fs, info.path, 0, info.size or 0):
                try:
                    record = json.loads(line)
                    key = record["hash"]
                except (ValueError, KeyError, TypeError):
                    continue
                if key not in seen:
                    seen.add(key)
                    yield record

    # ----------------------------------------------------------------- writing
    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store one answer: on a local disk written now (one ``write`` of one line: a kill tears at most
        this line); on an object store buffered, and put by the flusher thread within ``flush_interval_s``."""
        record = {"hash": key, **entry}
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self.appends:
                self._append(key, line)
                return
            self._wait_for_room()
            first = not self._pending
            if first:
                self._pending_since = time.monotonic()
            self._pending[key] = line
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=_flush_loop, args=(weakref.ref(self),), daemon=True, name="phiray-cache-flush"
                )
                self._flusher.start()
            # The first answer starts the clock (an idle flusher sleeps until told); the N-th is due now.
            if first or len(self._pending) >= self.flush_every:
                self._wake.notify()

    def _wait_for_room(self, give_up_s: float = 30.0) -> None:
        """Hold the caller while ``flush_every`` answers are already buffered or being put (holds the lock):
        the count bound is a bound on what a kill loses, not only a trigger. A store that keeps failing
        stops holding it after ``give_up_s`` (the answers stay buffered; the next flush raises)."""
        deadline = time.monotonic() + give_up_s
        while len(self._pending) + self._putting >= self.flush_every and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.notify()
            self._drained.wait(min(left, 1.0))

    def _append(self, key: str, line: bytes) -> None:
        if self._fd is None:
            # A torn previous line has no newline; starting ours on a fresh shard keeps lines whole.
            self._shard = f"{self._writer}-{self._seq:06d}.jsonl"
            self._seq += 1
            path = posixpath.join(self.dir, self._shard)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        offset = os.fstat(self._fd).st_size  # only this writer appends to this shard
        os.write(self._fd, line)
        self._index[key] = (self._shard, offset, len(line))

    def _flush_due(self) -> float:
        """Seconds until the buffered answers are due (0: now; inf: nothing buffered). Holds the lock."""
        if not self._pending:
            return float("inf")
        if len(self._pending) >= self.flush_every:
            return 0.0
        return max(0.0, self._pending_since + self.flush_interval_s - time.monotonic())

    def flush(self) -> None:
        """Put the buffered answers as one new immutable shard now (a no-op on a local disk)."""
        with self._flush_lock:  # one put at a time, so shards appear in sequence order
            with self._lock:
                pending, self._pending = self._pending, {}
                name = f"{self._writer}-{self._seq:06d}.jsonl"
                self._seq += bool(pending)
                self._putting = len(pending)
            if not pending:
                return
            try:
                with self.fs.open_output_stream(posixpath.join(self.dir, name)) as out:
                    out.write(b"".join(pending.values()))
            except Exception:
                with self._lock:  # keep them for the next attempt rather than lose them
                    self._pending = {**pending, **self._pending}
                    self._putting = 0
                    self._drained.notify_all()
                raise
            with self._lock:
                self._putting = 0
                self._drained.notify_all()
                offset = 0
                for key, line in pending.items():
                    self._index[key] = (name, offset, len(line))
                    offset += len(line)
                self._loaded_shards[name] = offset
                self.flushes += 1

    def close(self) -> None:
        """Flush, stop the flusher thread, close the local shard (a later put starts new ones)."""
        with self._lock:
            flusher, self._flusher = self._flusher, None
            self._stopping = flusher is not None
            self._wake.notify_all()
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join()
        self.flush()
        with self._lock:
            self._stopping = False
            if self._fd is not None:
                self._loaded_shards[self._shard] = os.fstat(self._fd).st_size  # indexed as written
                os.close(self._fd)
                self._fd = None
                self._shard = None

    def compact(self) -> int:
        """Merge every shard into one (call when no other writer is left); returns the answers kept."""
        self.close()
        before = [i.path for i in self._shards()]
        if len(before) <= 1:
            return len(self)
        name = f"compacted-{uuid.uuid4().hex[:8]}.jsonl"
        kept = 0
        with self.fs.open_output_stream(posixpath.join(self.dir, name)) as out:
            for record in self.entries():
                out.write((json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
                kept += 1
        # The merged shard exists before any other goes: a reader always sees the whole union.
        for path in before:
            self.fs.delete_file(path)
        self._index.clear()
        self._loaded_shards.clear()
        self.reload()
        return kept

    def __del__(self) -> None:  # best effort: flush what is buffered
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def _flush_loop(ref: "weakref.ref[RequestCache]") -> None:
    """The flusher thread: puts buffered answers when due; holds its cache only weakly, so an
    abandoned cache is collected (and this thread ends) like any object."""
    while True:
        cache = ref()
        if cache is None:
            return
        with cache._lock:
            if cache._stopping:
                return
            wait = cache._flush_due()
            if wait > 0:
                cache._wake.wait(min(wait, 1.0))
                continue
        try:
            cache.flush()
        except Exception:  # noqa: BLE001  (kept pending; the next flush or close retries and raises)
            time.sleep(1.0)
        del cache


def _lines(fs: pafs.FileSystem, path: str, start: int, end: int, chunk: int = 8 << 20) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for every complete line of ``path`` in [start, end), read in chunks; an
    unterminated tail (a write in progress, or torn by a kill) is left for the next look."""
    with fs.open_input_file(path) as fh:
        carry, carry_at, pos = b"", start, start
        while pos < end:
            new = fh.read_at(min(chunk, end - pos), pos)
            if not new:
                break
            pos += len(new)
            data, offset = carry + new, carry_at
            *lines, carry = data.split(b"\n")
            for body in lines:
                yield offset, body + b"\n"
                offset += len(body) + 1
            carry_at = offset
