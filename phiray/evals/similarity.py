"""phi-1 §5's contamination analysis: how close is each HumanEval problem to its nearest training exercise?

Two measures, as in the paper (Gunasekar et al., 2023, §5.2):

- embedding distance: L2 distance between normalised embeddings (the run's configured embedder,
  :mod:`phiray.data.embed`) of the problem (prompt + canonical solution) and of each exercise
  (prompt + solution); on unit vectors it ranks like cosine similarity;
- AST match rate ``tau = 1 - tree_edit_distance / max(node counts)`` between the two programs' syntax
  trees, nodes labelled by their type (so renamed variables or reworded docstrings do not hide a copy);
  the tree edit distance is Zhang-Shasha's, from the ``zss`` package.

Tree edit distance is quadratic-to-quartic in tree size, so it runs only on each problem's candidates:
its ``top_k`` nearest exercises by embedding plus its ``top_k`` nearest by node-type histogram (a cheap
structural proxy: embeddings alone rank by wording and miss structural look-alikes); trees larger than
``max_nodes`` are skipped (counted). The counts are therefore a lower bound on an all-pairs search.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

THRESHOLDS = (0.95, 0.9, 0.85, 0.8)


@dataclass(frozen=True)
class Tree:
    root: Any  # zss.Node
    size: int


def syntax_tree(code: str) -> Tree | None:
    """The program's AST as a ``zss`` tree of node-type labels (None when it does not parse)."""
    from zss import Node

    try:
        module = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    size = 0

    def convert(node: ast.AST) -> Node:
        nonlocal size
        size += 1
        out = Node(type(node).__name__)
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.Load, ast.Store, ast.Del)):  # contexts add nodes, not structure
                out.addkid(convert(child))
        return out

    return Tree(convert(module), size)


def match_rate(a: Tree, b: Tree) -> float:
    """tau = 1 - tree edit distance / max(node counts), in [0, 1] (unit costs, Zhang-Shasha)."""
    from zss import simple_distance

    distance = simple_distance(a.root, b.root)
    return max(0.0, 1.0 - distance / max(a.size, b.size))


def node_histograms(codes: Sequence[str]) -> np.ndarray:
    """Per program, the share of each AST node type (rows sum to 1; an unparsable program is all zeros)."""
    counts = []
    for code in codes:
        try:
            counts.append(Counter(type(n).__name__ for n in ast.walk(ast.parse(code))))
        except (SyntaxError, ValueError):
            counts.append(Counter())
    vocab = sorted({k for c in counts for k in c})
    out = np.array([[c[k] for k in vocab] for c in counts], dtype=np.float32).reshape(len(codes), len(vocab))
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1.0)


def normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def nearest_exercises(
    problems: Sequence[tuple[str, str]],
    exercises: Sequence[tuple[str, str]],
    embedder,
    top_k: int = 3,
    max_nodes: int = 200,
    workers: int = 1,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Per problem ``(id, code)``: the nearest exercise by embedding distance, and the best AST match rate
    among its candidates (``top_k`` nearest by embedding and by node-type histogram); plus counters (pairs
    compared, trees skipped as too large or unparsable). The tree edit distances (pure Python, most of the
    time) run on ``workers`` processes."""
    counts = {"pairs": 0, "skipped_large": 0, "skipped_unparsable": 0}
    if not problems or not exercises:
        return [], counts
    p_vec = normalised(np.asarray(embedder.embed([c for _, c in problems]), dtype=np.float32))
    e_vec = normalised(np.asarray(embedder.embed([c for _, c in exercises]), dtype=np.float32))
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * p_vec @ e_vec.T))  # L2 on unit vectors
    shapes = node_histograms([c for _, c in problems] + [c for _, c in exercises])
    p_shape, e_shape = shapes[: len(problems)], shapes[len(problems) :]
    sizes: dict[int, int | None] = {}  # exercise index -> its tree's size (None: unparsable), parsed once

    rows, work = [], []  # work: (row, exercise id, problem code, exercise code) for each pair to compare
    for i, (pid, code) in enumerate(problems):
        order = np.argsort(distances[i], kind="stable")[: max(1, top_k)]
        structural = np.abs(e_shape - p_shape[i]).sum(axis=1)  # L1 between node-type shares, one row at a time
        candidates = dict.fromkeys([*order.tolist(), *np.argsort(structural, kind="stable")[:top_k].tolist()])
        rows.append(
            {
                "problem": pid,
                "nearest_by_embedding": exercises[int(order[0])][0],
                "embedding_distance": float(distances[i, order[0]]),
                "best_tau": None,
                "nearest_by_tau": None,
                "taus": {},
            }
        )
        size = _tree_size(code)
        if size is None or size > max_nodes:
            counts["skipped_unparsable" if size is None else "skipped_large"] += 1
            continue
        for j in (int(x) for x in candidates):
            if j not in sizes:
                sizes[j] = _tree_size(exercises[j][1])
            other = sizes[j]
            if other is None or other > max_nodes:
                counts["skipped_unparsable" if other is None else "skipped_large"] += 1
                continue
            counts["pairs"] += 1
            work.append((len(rows) - 1, exercises[j][0], code, exercises[j][1]))
    for (r, exercise_id, _, _), tau in zip(work, _match_rates([(a, b) for _, _, a, b in work], workers)):
        row = rows[r]
        row["taus"][exercise_id] = round(tau, 4)
        if row["best_tau"] is None or tau > row["best_tau"]:
            row["best_tau"], row["nearest_by_tau"] = tau, exercise_id
    return rows, counts


def _tree_size(code: str) -> int | None:
    tree = syntax_tree(code)
    return None if tree is None else tree.size


def _match_rate_of(pair: tuple[str, str]) -> float:
    a, b = syntax_tree(pair[0]), syntax_tree(pair[1])
    return match_rate(a, b)


def _match_rates(pairs: list[tuple[str, str]], workers: int) -> list[float]:
    """tau of each (code, code) pair, in order; on a pool of ``workers`` spawned processes when it pays."""
    if workers <= 1 or len(pairs) < 2 * workers:
        return [_match_rate_of(p) for p in pairs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the driver may hold torch's threads (the embedder), which a fork would copy mid-state
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_match_rate_of, pairs, chunksize=max(1, len(pairs) // (8 * workers))))


def tau_table(rows: list[dict[str, Any]], thresholds: Sequence[float] = THRESHOLDS) -> list[dict[str, Any]]:
    """phi-1's table: how many problems have a training exercise with tau >= each threshold."""
    return [
        {
            "tau": t,
            "problems": sum(1 for r in rows if r["best_tau"] is not None and r["best_tau"] >= t),
            "of": len(rows),
        }
        for t in thresholds
    ]


def to_prune(rows: list[dict[str, Any]], tau: float) -> set[str]:
    """Exercise ids whose AST match rate with some problem is at or above ``tau`` (phi-1 §5.2 pruned its
    exercises this way and retrained): every compared pair counts, not only each problem's best."""
    return {eid for r in rows for eid, t in r["taus"].items() if t >= tau}
