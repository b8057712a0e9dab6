"""pass@k (unbiased estimator, Chen et al. 2021) and scoring completions in the sandbox."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from phiray.evals.benchmarks import STOP_SEQUENCES, Task
from phiray.sandbox import Sandbox


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), as the numerically stable product prod_{i=n-c+1..n} (1 - k/i)."""
    if n <= 0 or k <= 0 or c < 0 or c > n:
        raise ValueError(f"pass@k needs 0 <= c <= n, n >= 1, k >= 1 (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    remaining = 1.0
    for i in range(n - c + 1, n + 1):
        remaining *= 1.0 - k / i
    return 1.0 - remaining


def truncate(completion: str, stop: list[str] | None = None) -> str:
    """Cut a completion at the first stop sequence (the function ends where top-level code starts)."""
    cut = len(completion)
    for seq in STOP_SEQUENCES if stop is None else stop:
        at = completion.find(seq)
        if at != -1:
            cut = min(cut, at)
    return completion[:cut]


def score_samples(
    tasks: list[Task], samples: list[dict[str, Any]], sandbox: Sandbox, ks: list[int]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Verdict per sample ({"task_id", "completion"}) and pass@k per k (over tasks with >= k samples)."""
    by_id = {t.task_id: t for t in tasks}
    unknown = sorted({s["task_id"] for s in samples} - set(by_id))
    if unknown:
        raise ValueError(f"samples name unknown task ids, e.g. {unknown[:3]}")
    jobs = [
        {
            "code": by_id[s["task_id"]].program(s["completion"]),
            "tests": by_id[s["task_id"]].tests,
            "entry_point": by_id[s["task_id"]].entry_point,
        }
        for s in samples
    ]
    verdicts = sandbox.check_many(jobs)
    rows = [
        {
            **s,
            "passed": v.passed,
            "result": v.status if v.passed or not v.detail else f"{v.status}: {v.detail}",
            "status": v.status,
            "duration_s": round(v.duration_s, 4),
        }
        for s, v in zip(samples, verdicts)
    ]
    return summarize(rows, ks), rows


def summarize(rows: list[dict[str, Any]], ks: list[int]) -> dict[str, Any]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    statuses: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row["task_id"]][0] += 1
        counts[row["task_id"]][1] += bool(row["passed"])
        statuses[row["status"]] += 1
    summary: dict[str, Any] = {"tasks": len(counts), "samples": len(rows), "statuses": dict(statuses)}
    for k in ks:
        eligible = [(n, c) for n, c in counts.values() if n >= k]
        if eligible:
            summary[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in eligible) / len(eligible)
    return summary


def per_task(rows: list[dict[str, Any]], ks: list[int]) -> list[dict[str, Any]]:
    """One row per task: n, passes, pass@k and the samples' statuses (the per-task results file)."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["task_id"]].append(row)
    out = []
    for task_id, items in grouped.items():
        n, c = len(items), sum(bool(r["passed"]) for r in items)
        entry = {"task_id": task_id, "n": n, "passed": c, "results": [r["result"] for r in items]}
        entry.update({f"pass@{k}": pass_at_k(n, c, k) for k in ks if n >= k})
        out.append(entry)
    return out
