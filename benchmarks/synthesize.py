"""Synthesis throughput: samples/s through the OpenAI teacher at concurrency 32 vs sequential, against the
tests' OpenAI-compatible server on 127.0.0.1 with 100 ms latency per request (a stand-in for a remote
LLM; the server runs in its own process, as a remote endpoint would). A sample = one planned prompt row -> request -> answer -> parsed textbook/exercise (GenerateBatch,
the stage's per-actor work), with the request cache off so every sample is really sent. The server
answers each prompt kind with one canned valid answer, so its own CPU stays out of the measurement.

    .venv/bin/python benchmarks/synthesize.py [--latency 0.1] [--concurrency 32] [--n 640] [--n-seq 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from fake_openai import spawn  # noqa: E402
from phiray.config import TeacherConfig  # noqa: E402
from phiray.teacher.plan import plan_rows  # noqa: E402
from phiray.teacher.worker import GenerateBatch  # noqa: E402


def measure(base_url: str, rows: list[dict], concurrency: int, seed_offset: int) -> tuple[float, int]:
    """samples/s and the number of samples parsed ok, for one pass over ``rows``."""
    cfg = TeacherConfig(kind="openai", base_url=base_url, model="fake", concurrency=concurrency,
                        cache=False, max_retries=2)
    worker = GenerateBatch(cfg.model_dump(mode="json"), cache_dir=None)
    rows = [{**r, "seed": r["seed"] + seed_offset} for r in rows]  # distinct requests per pass
    batch = {k: [r[k] for r in rows] for k in rows[0]}
    t0 = time.perf_counter()
    out = worker(batch)
    elapsed = time.perf_counter() - t0
    return len(rows) / elapsed, sum(s == "ok" for s in out["status"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.1)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--n", type=int, default=640, help="samples for the concurrent run")
    p.add_argument("--n-seq", type=int, default=40, help="samples for the sequential baseline")
    p.add_argument("--repeats", type=int, default=3, help="alternating sequential/concurrent passes; medians reported")
    args = p.parse_args()
    rows = plan_rows(args.n // 3, args.n - args.n // 3, ["high school students", "professionals"],
                     ["concise", "step by step"], seed=7, heldout_fraction=0.0, snippets=[], snippet_chars=0)
    server, base_url = spawn("--latency", str(args.latency), "--canned")
    try:
        measure(base_url, rows[:8], 8, seed_offset=10**6)  # warm-up: imports, connection set-up
        seqs, concs = [], []
        for rep in range(args.repeats):  # alternate, so a burst of load from elsewhere hits both sides
            seqs.append(measure(base_url, rows[::max(1, len(rows) // args.n_seq)][: args.n_seq], 1, 2 * rep))
            concs.append(measure(base_url, rows, args.concurrency, 2 * rep + 1))
        (seq, seq_ok), (conc, conc_ok) = sorted(seqs)[len(seqs) // 2], sorted(concs)[len(concs) // 2]
    finally:
        server.terminate()
        server.wait()
    ideal = 1.0 / args.latency
    print(f"latency {args.latency * 1000:.0f} ms per request (ideal sequential {ideal:.1f} samples/s)")
    print(f"sequential      : {seq:8.2f} samples/s ({seq_ok}/{args.n_seq} parsed ok)")
    print(f"concurrency {args.concurrency:<4}: {conc:8.2f} samples/s ({conc_ok}/{len(rows)} parsed ok)")
    print(f"ratio           : {conc / seq:8.1f}x (goal >= 25x; medians of {args.repeats} alternating passes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
