"""What every benchmark loader produces and shares: :class:`Task`, phi-1's MBPP prompt format, signatures from
a reference solution, and JSONL files. The bottom of ``phiray.evals``: ``benchmarks`` and ``evalplus`` both build on it."""

from __future__ import annotations

import ast
import gzip
import json
import os
import warnings
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Task:
    task_id: str
    prompt: str
    tests: str
    entry_point: str
    reference: str = ""  # a complete program that passes (canonical solution)

    def program(self, completion: str) -> str:
        return self.prompt + completion

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mbpp_prompt(text: str, asserts: list[str], signature: str, header: str = "") -> str:
    """phi-1's MBPP format: the function's signature, then a docstring with the task and its tests."""
    body = "\n".join(f"    {line}" for line in [text, *asserts])
    head = f"{header}\n\n" if header else ""
    return f'{head}{signature}\n    """\n{body}\n    """\n'


def parse_lenient(text: str) -> ast.Module:
    with warnings.catch_warnings():  # old MBPP strings have invalid escapes such as "\d"
        warnings.simplefilter("ignore")
        try:
            return ast.parse(text.expandtabs(4))
        except SyntaxError:
            return ast.Module(body=[], type_ignores=[])


def signature_of(code: str, name: str) -> str:
    """``def name(args):`` from the reference solution (falls back to ``def name(*args):``)."""
    for node in ast.walk(parse_lenient(code)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return f"def {name}({ast.unparse(node.args)}):"
    return f"def {name}(*args):"


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a .jsonl or .jsonl.gz file (blank lines skipped)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
