"""Near-duplicate removal of generated samples (MinHash + LSH) and the diversity report."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from phiray.data.minhash import cluster_indices, normalized_hash, signature, tokens


def near_duplicates(
    texts: list[str], threshold: float, num_perm: int = 64, shingle_size: int = 5, seed: int = 1
) -> list[int | None]:
    """For each text, the index of the earlier text it duplicates (exactly, or near: MinHash Jaccard >=
    threshold, verified), else None. The filtering helper's MinHash/LSH (phiray.data.minhash) does the work."""
    sigs = [signature(t, num_perm=num_perm, shingle_size=shingle_size, seed=seed) for t in texts]
    reps = cluster_indices(sigs, threshold)
    exact: dict[str, int] = {}
    dup_of: list[int | None] = []
    for i, text in enumerate(texts):
        first = exact.setdefault(normalized_hash(text), i)
        rep = first if first != i else reps[i]
        dup_of.append(rep if rep != i else None)
    return dup_of


def distinct_ngram_ratio(texts: list[str], n: int = 4, limit: int = 5000) -> float:
    """Distinct n-grams / all n-grams over (at most ``limit``) texts: 1.0 means nothing repeats."""
    seen, total = set(), 0
    for text in texts[:limit]:
        toks = tokens(text)
        grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return round(len(seen) / total, 4) if total else 0.0


class DiversityTally:
    """Duplicate counts overall and per (topic, audience, style) cell, fed row by row (so a stage can
    stream millions of samples through it); :meth:`report` adds the distinct n-gram ratio of kept texts."""

    def __init__(self) -> None:
        self.cells: dict[str, list[int]] = defaultdict(lambda: [0, 0])

    def add(self, topic: str, audience: str, style: str, duplicate: bool) -> None:
        cell = self.cells[f"{topic} | {audience} | {style}"]
        cell[0] += 1
        cell[1] += bool(duplicate)

    def report(self, kept_texts: list[str], top_cells: int = 20) -> dict[str, Any]:
        rates = {k: {"n": n, "duplicates": d, "rate": round(d / n, 4)} for k, (n, d) in self.cells.items()}
        worst = sorted(rates.items(), key=lambda kv: (-kv[1]["rate"], -kv[1]["n"], kv[0]))[:top_cells]
        n = sum(v["n"] for v in rates.values())
        n_dup = sum(v["duplicates"] for v in rates.values())
        return {
            "samples": n,
            "duplicates": n_dup,
            "duplicate_rate": round(n_dup / n, 4) if n else 0.0,
            "cells": len(rates),
            "cells_with_duplicates": sum(1 for v in rates.values() if v["duplicates"]),
            "worst_cells": dict(worst),
            "distinct_4gram_ratio": distinct_ngram_ratio(kept_texts),
            "distinct_2gram_ratio": distinct_ngram_ratio(kept_texts, n=2),
        }


def diversity_report(rows: list[dict[str, Any]], dup_of: list[int | None], top_cells: int = 20) -> dict[str, Any]:
    """Duplicate rate overall and per (topic, audience, style) cell; distinct n-gram ratio of the kept."""
    tally = DiversityTally()
    for row, dup in zip(rows, dup_of):
        tally.add(row["topic"], row["audience"], row["style"], dup is not None)
    return tally.report([r["text"] for r, d in zip(rows, dup_of) if d is None], top_cells)
