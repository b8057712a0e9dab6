"""Check the current-figures table at the top of benchmarks/RESULTS.md, and show which rows are stale.

    python benchmarks/results.py            # the table with a state per row; exit 1 if a row is malformed
    python benchmarks/results.py --strict   # exit 1 on a stale row too

A row is complete when it names its figure, value, command, machine, load, date (YYYY-MM-DD) and commit; the
commit must be in this repository's history and the command's script must exist. A row is *stale* when what the
figure measures changed after its commit: the benchmark script (``benchmarks/x.py``, ``tests/x.py``) or, for a
figure of the whole recipe (``make ...``, ``phiray ...``), anything under ``phiray/``. "not measured" rows need
only a figure and a command.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
BEGIN, END = "<!-- current:begin -->", "<!-- current:end -->"
COLUMNS = ["figure", "value", "goal", "command", "machine", "load", "date", "commit"]
REQUIRED = ["figure", "value", "command", "machine", "load", "date", "commit"]


def read_table(text: str) -> list[dict[str, str]]:
    """The rows between the markers, as {column: cell}; a ValueError when the table is not there or not shaped."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"RESULTS.md has no {BEGIN} ... {END} table")
    lines = [ln.strip() for ln in text.split(BEGIN, 1)[1].split(END, 1)[0].strip().splitlines()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    if header != COLUMNS:
        raise ValueError(f"the table's columns are {header}, expected {COLUMNS}")
    return [dict(zip(COLUMNS, _cells(ln))) for ln in lines[2:] if ln]


def _cells(line: str) -> list[str]:
    """A Markdown table row's cells; a ``|`` inside backticks (a shell pipe in a command) stays in its cell."""
    cells, current, in_code = [], "", False
    for char in line.strip().removeprefix("|").removesuffix("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return cells + [current.strip()]


def watched_path(command: str) -> str:
    """What the figure measures: its script, or the package for a figure of the whole recipe."""
    found = re.search(r"\b((?:benchmarks|tests)/[\w/.-]+\.py)", command)
    return found.group(1) if found else "phiray"


def problems(row: dict[str, str]) -> list[str]:
    """Why ``row`` is malformed (nothing when it is complete)."""
    if row.get("value", "").startswith("not measured"):
        wanted = ["figure", "command"]
    else:
        wanted = REQUIRED
    found = [f"{c} is empty" for c in wanted if not row.get(c)]
    if row.get("date") and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["date"]):
        found.append(f"date {row['date']!r} is not YYYY-MM-DD")
    path = watched_path(row.get("command", ""))
    if not (REPO / path).exists():
        found.append(f"{path} does not exist")
    return found


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


def staleness(row: dict[str, str]) -> str:
    """ "current", "STALE (n commits to PATH since)", or why it cannot tell (no commit, not a git checkout)."""
    commit = row.get("commit", "")
    if not commit:
        return "no commit"
    if _git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return f"unknown commit {commit}"
    path = watched_path(row["command"])
    changes = _git("rev-list", "--count", f"{commit}..HEAD", "--", path)
    n = int(changes.stdout.strip() or 0)
    return "current" if n == 0 else f"STALE ({n} commits to {path} since)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true", help="Fail on a stale row too.")
    args = parser.parse_args(argv)
    rows = read_table(RESULTS.read_text())
    bad = stale = 0
    for row in rows:
        issues = problems(row)
        state = "; ".join(issues) if issues else staleness(row)
        bad += bool(issues) or state.startswith("unknown commit")
        stale += state.startswith("STALE")
        print(f"{state:<44} {row['figure']}: {row['value']}")
    print(f"{len(rows)} rows, {bad} malformed, {stale} stale")
    return 1 if bad or (args.strict and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
