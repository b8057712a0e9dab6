"""Persistent request cache: append-only JSONL shards in a local directory.

Each process appends to its own shard (``<pid>-<random>.jsonl``) so concurrent Ray actors never
interleave writes; every answer is written and flushed the moment it arrives, so a process killed
mid-run loses nothing it already received. Reading loads every shard; a torn last line (a kill in the
middle of a write) is skipped. Only successful answers are stored: failures are retried next time.
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
        self._entries: dict[str, dict[str, Any]] = {}
        self._loaded_shards: dict[str, int] = {}
        self._lock = threading.Lock()
        self._fd: int | None = None
        self.torn_lines = 0
        self.reload()

    def reload(self) -> None:
        """Pick up answers other processes appended since the last look (shards only grow)."""
        for shard in sorted(self.dir.glob("*.jsonl")):
            offset = self._loaded_shards.get(shard.name, 0)
            with shard.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
            complete = data[: data.rfind(b"\n") + 1]  # an unterminated tail may still be being written
            for line in complete.splitlines():
                try:
                    entry = json.loads(line)
                    self._entries[entry["hash"]] = entry
                except (ValueError, KeyError, TypeError):
                    self.torn_lines += 1
            self._loaded_shards[shard.name] = offset + len(complete)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store and flush one answer now (one ``write`` of one line: a kill tears at most this line)."""
        record = {"hash": key, **entry}
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
                self._fd = os.open(self.dir / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                # A torn previous line has no newline; starting ours on a fresh shard keeps lines whole.
                self._loaded_shards[name] = 0
            os.write(self._fd, line)
            self._entries[key] = record

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self) -> None:  # best effort; every line is already on disk
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass
