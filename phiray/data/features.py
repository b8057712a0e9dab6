"""Cheap structural features of a Python file, beside (or instead of) its embedding.

What an embedding of a few windows misses and a reader sees at once: how much of the file is explanation
(docstring and comment share, doctests), how it is built (definitions, their length, how many compute
something), whether it stands alone (share of calls into other modules, imports of its own package),
whether it is data or generated (literal lines, very long lines, generator markers) or a test module.
The measurements reuse the heuristic annotator's parsers (``phiray.data.annotators``); a file that does
not parse gets zeros and ``parses=0``. Every feature is a float; :data:`NAMES` fixes the order.
"""

from __future__ import annotations

import ast
import math
import re
from typing import Sequence

import numpy as np

from phiray.data import annotators as A

NAMES = (
    "parses",
    "log_lines",
    "log_chars",
    "blank_share",
    "mean_line_len",
    "long_line_share",
    "max_line_log",
    "comment_share",
    "docstring_char_share",
    "module_doc_log",
    "doc_coverage",
    "doctests_log",
    "defs_per_100_lines",
    "classes_share",
    "logic_func_share",
    "trivial_share",
    "avg_func_lines_log",
    "descriptive_names",
    "literal_share",
    "data_lines",
    "foreign_calls",
    "environment_branches_log",
    "main_demo",
    "relative_import_share",
    "imports_per_100_lines",
    "test_module",
    "generated",
    "all_list",
)


def _docstring_chars(tree: ast.Module) -> int:
    total = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            total += len(ast.get_docstring(node, clean=False) or "")
    return total


def structure_features(text: str) -> np.ndarray:
    """The :data:`NAMES` features of one file."""
    lines = text.splitlines() or [""]
    nonblank = [ln for ln in lines if ln.strip()]
    n_lines, n_chars = len(lines), max(1, len(text))
    base = {
        "log_lines": math.log1p(n_lines),
        "log_chars": math.log1p(len(text)),
        "blank_share": 1 - len(nonblank) / n_lines,
        "mean_line_len": min(200.0, sum(map(len, nonblank)) / max(1, len(nonblank))) / 100,
        "long_line_share": sum(len(ln) > 100 for ln in lines) / n_lines,
        "max_line_log": math.log1p(max(map(len, lines))),
        "comment_share": sum(ln.lstrip().startswith("#") for ln in nonblank) / max(1, len(nonblank)),
        "generated": float(bool(A.GENERATED_MARKERS.search(text[:3000]))),
    }
    try:
        tree = ast.parse(text)
        f = A._features(tree, text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return np.asarray([base.get(name, 0.0) for name in NAMES], np.float32)
    defs = f["defs"]
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    base.update(
        parses=1.0,
        docstring_char_share=_docstring_chars(tree) / n_chars,
        module_doc_log=math.log1p(f["module_doc_chars"]),
        doc_coverage=f["doc_coverage"],
        doctests_log=math.log1p(f["doctests"]),
        defs_per_100_lines=min(50.0, 100 * defs / n_lines) / 10,
        classes_share=(defs - f["funcs"]) / defs if defs else 0.0,
        logic_func_share=f["logic_funcs"] / f["funcs"] if f["funcs"] else 0.0,
        trivial_share=f["trivial_share"],
        avg_func_lines_log=math.log1p(f["avg_func_lines"]),
        descriptive_names=f["descriptive"],
        literal_share=f["literal_share"],
        data_lines=f["data_lines"],
        foreign_calls=f["foreign_calls"],
        environment_branches_log=math.log1p(f["environment_branches"]),
        main_demo=float(f["main_demo"] >= 2),
        relative_import_share=sum(isinstance(n, ast.ImportFrom) and n.level > 0 for n in imports) / len(imports)
        if imports
        else 0.0,
        imports_per_100_lines=min(50.0, 100 * len(imports) / n_lines) / 10,
        test_module=float(A._is_test_module(tree)),
        all_list=float(bool(re.search(r"^__all__\s*=", text, re.M))),
    )
    return np.asarray([base.get(name, 0.0) for name in NAMES], np.float32)


def structure_matrix(texts: Sequence[str]) -> np.ndarray:
    """(n, len(NAMES)) float32 features of ``texts``."""
    if not len(texts):
        return np.zeros((0, len(NAMES)), np.float32)
    return np.stack([structure_features(t) for t in texts])
