"""Repeated Ray-internal warnings in a run's log: a warning Ray prints once per fit, per second or per
worker is noise that buries phiray's own messages (issue 29: a tiny run had 8 "Failed to query Ray Train
Controller actor state" lines).

Limitation: only lines in Ray's logging format are counted. A Ray actor's bare stderr line, which the
driver shows as "(PlacementGroupCleaner pid=N) Failed to query ..." and the worker log holds with no prefix
at all, is not seen here: tests/test_local_ray_hygiene.py checks for that actor and message by name."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Ray's log format: "<time>\tWARNING placement_group_cleaner.py:85 -- <message>", possibly behind a
# "(Actor pid=N, ip=...)" prefix when a worker's line is forwarded to the driver. phiray's own lines
# ("12:00:00 phiray WARNING ...") and other libraries' formats do not match.
RAY_LINE = re.compile(r"\b(WARNING|ERROR|CRITICAL) ([\w.]+\.py):(\d+) -- (.*)")
VARIABLE = re.compile(r"0x[0-9a-f]+|[0-9a-f]{16,}|\d+")  # ids, pids, counts, times: the same warning still


def ray_warnings(text: str) -> Counter:
    """(level, file:line, message with ids and numbers masked) -> how often it appears in ``text``."""
    found: Counter = Counter()
    for line in ANSI.sub("", text).splitlines():
        match = RAY_LINE.search(line)
        if match:
            level, module, lineno, message = match.groups()
            found[(level, f"{module}:{lineno}", VARIABLE.sub("#", message.strip())[:200])] += 1
    return found


def repeated_ray_warnings(text: str) -> dict[tuple[str, str, str], int]:
    """The Ray warnings and errors that appear more than once in ``text``."""
    return {key: n for key, n in ray_warnings(text).items() if n > 1}


def worker_log_text(session_logs: Path, offsets: dict[Path, int] | None = None) -> str:
    """What a Ray session's workers printed (the lines ``log_to_driver`` forwards to a run's log): the
    ``worker-*.out``/``.err`` files, each from its offset in ``offsets`` (absent: from the start)."""
    parts = []
    for path in sorted(session_logs.glob("worker-*.[oe][ur][tr]")):
        with path.open("rb") as f:
            f.seek((offsets or {}).get(path, 0))
            parts.append(f.read().decode(errors="replace"))
    return "\n".join(parts)


def log_offsets(session_logs: Path) -> dict[Path, int]:
    """Current sizes of the session's worker logs (to read only what is written after this point)."""
    return {path: path.stat().st_size for path in session_logs.glob("worker-*.[oe][ur][tr]")}
