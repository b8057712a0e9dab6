"""Persistent request cache: append-only JSONL shards in a local directory.

Each process appends to its own shard (``<pid>-<random>.jsonl``) so concurrent Ray actors never
interleave writes; every answer is written and flushed the moment it arrives, so a process killed
mid-run loses nothing it already received. Reading indexes every shard; a torn last line (a kill in the
middle of a write) is skipped. Only successful answers are stored: failures are retried next time.

Memory holds only the index (hash -> shard, offset, length), never the answers: at phi-1 scale (~2M
answers of several KB) each generation actor would otherwise hold gigabytes. A hit reads its one line.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any


class RequestCache:
    def __init__(self, directory: str | os.PathLike[str]):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[str, int, int]] = {}  # hash -> (shard, offset, length)
        self._loaded_shards: dict[str, int] = {}
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._shard: str | None = None
        self.torn_lines = 0
        self.reload()

    def reload(self) -> None:
        """Index answers other processes appended since the last look (shards only grow)."""
        for shard in sorted(self.dir.glob("*.jsonl")):
            if shard.name == self._shard:
                continue  # our own shard is indexed as we write it
            offset = self._loaded_shards.get(shard.name, 0)
            with shard.open("rb") as fh:
                fh.seek(offset)
                for line in iter(fh.readline, b""):
                    if not line.endswith(b"\n"):
                        break  # an unterminated tail may still be being written: next time
                    try:
                        key = json.loads(line)["hash"]
                        with self._lock:
                            self._index[key] = (shard.name, offset, len(line))
                    except (ValueError, KeyError, TypeError):
                        self.torn_lines += 1
                    offset += len(line)
            self._loaded_shards[shard.name] = offset

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def get(self, key: str) -> dict[str, Any] | None:
        where = self._index.get(key)
        if where is None:
            return None
        shard, offset, length = where
        with open(self.dir / shard, "rb") as fh:
            fh.seek(offset)
            return json.loads(fh.read(length))

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store and flush one answer now (one ``write`` of one line: a kill tears at most this line)."""
        record = {"hash": key, **entry}
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._shard = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
                self._fd = os.open(self.dir / self._shard, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                # A torn previous line has no newline; starting ours on a fresh shard keeps lines whole.
            offset = os.fstat(self._fd).st_size  # only this process appends to this shard
            os.write(self._fd, line)
            self._index[key] = (self._shard, offset, len(line))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._shard = None  # a new put starts a new shard; reload indexes this one like any other

    def __del__(self) -> None:  # best effort; every line is already on disk
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
