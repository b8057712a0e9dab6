"""Generate + score per benchmark: shared by `phiray eval` and the `evaluate` stage."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from phiray.evals.benchmarks import Task
from phiray.evals.scoring import per_task, score_samples
from phiray.sandbox import Sandbox

log = logging.getLogger("phiray.evals")
Sampler = Callable[[list[Task]], list[dict[str, Any]]]


def evaluate(
    benchmarks: dict[str, list[Task]], sample: Sampler, sandbox: Sandbox, ks: list[int]
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """({bench: summary}, {bench: per-sample rows}) for each benchmark's tasks."""
    results: dict[str, Any] = {}
    samples_out: dict[str, list[dict[str, Any]]] = {}
    for name, tasks in benchmarks.items():
        start = time.perf_counter()
        samples = sample(tasks)
        generated = time.perf_counter()
        summary, rows = score_samples(tasks, samples, sandbox, ks)
        summary.update(
            generation_s=round(generated - start, 2),
            scoring_s=round(time.perf_counter() - generated, 2),
            executions_per_s=round(len(rows) / max(time.perf_counter() - generated, 1e-9), 2),
        )
        results[name] = summary
        samples_out[name] = rows
        log.info("evaluate %s: %s", name, {k: v for k, v in summary.items() if k.startswith("pass@")})
    return results, samples_out


def table(results: dict[str, dict[str, Any]], title: str = "") -> str:
    """A plain-text summary table: benchmark, tasks, samples, pass@k columns."""
    ks = sorted({key for r in results.values() for key in r if key.startswith("pass@")}, key=lambda s: int(s[5:]))
    header = ["benchmark", "tasks", "samples", *ks]
    lines = [header] + [
        [name, str(r["tasks"]), str(r["samples"]), *(f"{100 * r[k]:.1f}%" if k in r else "-" for k in ks)]
        for name, r in results.items()
    ]
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines)
    return f"{title}\n{text}" if title else text


def per_task_files(samples: dict[str, list[dict[str, Any]]], ks: list[int]) -> dict[str, list[dict[str, Any]]]:
    return {name: per_task(rows, ks) for name, rows in samples.items()}
