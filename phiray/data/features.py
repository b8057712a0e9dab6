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
    # how the functions are written (issue 28, chosen on the labelled dev split): computation vs wiring
    "compute_density",
    "method_call_share",
    "self_attribute_share",
    "loops_per_function",
    "raises_per_100_lines",
    "annotated_arg_share",
    "decorators_per_function",
    "io_calls_per_100_lines",
    "string_constant_share",
    "numbers_per_100_lines",
    "pure_function_share",
    "nesting_depth",
    "recursive_share",
    "isinstance_per_100_lines",
    "try_per_100_lines",
    "imported_name_share",
    "local_call_share",
    "assignment_share",
    "median_function_lines_log",
    "placeholder_share",
    "super_calls_per_100_lines",
    "keyword_call_share",
)
# call roots that do I/O, talk to the OS or log: a function full of them wires, it does not compute
_IO_ROOTS = frozenset(
    {"open", "print", "input", "os", "sys", "subprocess", "socket", "requests", "shutil", "logging", "logger", "log"}
)
_COMPUTES = (
    ast.BinOp,
    ast.AugAssign,
    ast.Compare,
    ast.Subscript,
    ast.For,
    ast.While,
    ast.comprehension,
    ast.BoolOp,
    ast.UnaryOp,
)
_BLOCKS = (ast.For, ast.While, ast.If, ast.With, ast.Try, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _docstring_chars(tree: ast.Module) -> int:
    total = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            total += len(ast.get_docstring(node, clean=False) or "")
    return total


def _depth(node: ast.AST, depth: int = 0) -> int:
    """Deepest nesting of blocks (loops, branches, definitions) under ``node``."""
    deepest = depth
    for child in ast.iter_child_nodes(node):
        deepest = max(deepest, _depth(child, depth + isinstance(child, _BLOCKS)))
    return deepest


def _call_root(call: ast.Call) -> str | None:
    """The name a call starts from: ``os`` for ``os.path.join(...)``, ``f`` for ``f(...)``."""
    func = call.func
    while isinstance(func, ast.Attribute):
        func = func.value
    return func.id if isinstance(func, ast.Name) else None


def _function_shape(tree: ast.Module, imported: set[str]) -> dict[str, float]:
    """How the functions are written: computation per statement, loops, purity, recursion, length."""
    funcs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    computes = statements = loops = pure = recursive = 0
    lengths = []
    for f in funcs:
        nodes = list(ast.walk(f))
        computes += sum(isinstance(n, _COMPUTES) for n in nodes)
        statements += sum(isinstance(n, ast.stmt) for n in nodes)
        loops += sum(isinstance(n, (ast.For, ast.While, ast.comprehension)) for n in nodes)
        calls = [n for n in nodes if isinstance(n, ast.Call)]
        uses_self = any(isinstance(n, ast.Name) and n.id == "self" for n in nodes)
        calls_modules = any(isinstance(c.func, ast.Attribute) and _call_root(c) in imported for c in calls)
        pure += not uses_self and not calls_modules
        recursive += any(isinstance(c.func, ast.Name) and c.func.id == f.name for c in calls)
        lengths.append((f.end_lineno or f.lineno) - f.lineno + 1)
    n = max(1, len(funcs))
    return {
        "compute_density": computes / max(1, statements),
        "loops_per_function": loops / n,
        "pure_function_share": pure / n if funcs else 0.0,
        "recursive_share": recursive / n,
        "median_function_lines_log": math.log1p(float(np.median(lengths))) if lengths else 0.0,
        "decorators_per_function": sum(len(f.decorator_list) for f in funcs) / n,
    }


def _shape_features(tree: ast.Module, n_lines: int) -> dict[str, float]:
    """Computation vs wiring: what the calls reach, what the constants are, how deep the blocks nest."""
    nodes = list(ast.walk(tree))
    imported: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported |= {a.asname or a.name for a in node.names}
    defined = {n.name for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    calls = [n for n in nodes if isinstance(n, ast.Call)]
    roots = [_call_root(c) for c in calls]
    names = [n for n in nodes if isinstance(n, ast.Name)]
    attributes = [n for n in nodes if isinstance(n, ast.Attribute)]
    statements = [n for n in nodes if isinstance(n, ast.stmt)]
    constants = [n for n in nodes if isinstance(n, ast.Constant)]
    numbers = [c for c in constants if isinstance(c.value, (int, float, complex)) and not isinstance(c.value, bool)]
    args = [n for n in nodes if isinstance(n, ast.arg)]
    per_100 = 100 / n_lines
    n_calls, n_statements = max(1, len(calls)), max(1, len(statements))
    placeholders = sum(
        isinstance(n, ast.Pass) or (isinstance(n, ast.Expr) and getattr(n.value, "value", None) is Ellipsis)
        for n in statements
    )
    return {
        **_function_shape(tree, imported),
        "method_call_share": sum(isinstance(c.func, ast.Attribute) for c in calls) / n_calls,
        "self_attribute_share": sum(isinstance(a.value, ast.Name) and a.value.id in ("self", "cls") for a in attributes)
        / max(1, len(attributes) + len(names)),
        "raises_per_100_lines": per_100 * sum(isinstance(n, ast.Raise) for n in nodes),
        "annotated_arg_share": sum(a.annotation is not None for a in args) / max(1, len(args)),
        "io_calls_per_100_lines": per_100 * sum(r in _IO_ROOTS for r in roots),
        "string_constant_share": sum(isinstance(c.value, str) for c in constants) / max(1, len(constants)),
        "numbers_per_100_lines": min(50.0, per_100 * len(numbers)) / 10,
        "nesting_depth": min(12, _depth(tree)) / 4,
        "isinstance_per_100_lines": per_100 * sum(r == "isinstance" for r in roots),
        "try_per_100_lines": per_100 * sum(isinstance(n, ast.Try) for n in nodes),
        "imported_name_share": sum(n.id in imported for n in names) / max(1, len(names)),
        "local_call_share": sum(r in defined for r in roots) / n_calls,
        "assignment_share": sum(isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign)) for n in statements)
        / n_statements,
        "placeholder_share": placeholders / n_statements,
        "super_calls_per_100_lines": per_100 * sum(r == "super" for r in roots),
        "keyword_call_share": sum(bool(c.keywords) for c in calls) / n_calls,
    }


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
        shape = _shape_features(tree, n_lines)
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
        **shape,
    )
    return np.asarray([base.get(name, 0.0) for name in NAMES], np.float32)


def structure_matrix(texts: Sequence[str]) -> np.ndarray:
    """(n, len(NAMES)) float32 features of ``texts``."""
    if not len(texts):
        return np.zeros((0, len(NAMES)), np.float32)
    return np.stack([structure_features(t) for t in texts])
