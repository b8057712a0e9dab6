"""Synthesis throughput: samples/s through the OpenAI teacher at concurrency 32 vs sequential, against the
tests' OpenAI-compatible server on 127.0.0.1 with 100 ms latency per request (a stand-in for a remote
LLM; the server runs in its own process, as a remote endpoint would). A sample = one planned prompt row -> request -> answer -> parsed textbook/exercise (GenerateBatch,
the stage's per-actor work), with the request cache off so every sample is really sent. The server
answers each prompt kind with one canned valid answer, so its own CPU stays out of the measurement.

    .venv/bin/python benchmarks/synthesize.py [--latency 0.1] [--concurrency 32] [--n 640] [--n-seq 40]

``--stage`` adds the stage's own shape: the synthesize stage's ``generate`` on Ray Data (one actor, batches
of ``concurrency`` rows, verification off) against a server whose latency varies (``--jitter 0.5``: 50-150
ms), with ``synthesize.calls_per_actor`` 1 (a batch waits for its slowest answer before the next starts)
vs 2 (the default: two batches share the actor's 32 slots).
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
    cfg = TeacherConfig(
        kind="openai", base_url=base_url, model="fake", concurrency=concurrency, cache=False, max_retries=2
    )
    worker = GenerateBatch(cfg, cache_dir=None)
    rows = [{**r, "seed": r["seed"] + seed_offset} for r in rows]  # distinct requests per pass
    batch = {k: [r[k] for r in rows] for k in rows[0]}
    t0 = time.perf_counter()
    out = worker(batch)
    elapsed = time.perf_counter() - t0
    return len(rows) / elapsed, sum(s == "ok" for s in out["status"])


def stage_passes(args: argparse.Namespace, rows: list[dict]) -> dict[int, float]:
    """samples/s through the synthesize stage's Ray Data generation, per ``calls_per_actor``."""
    import tempfile

    from phiray.config import load_config
    from phiray.rundir import RunDir
    from phiray.runtime import init_ray
    from phiray.stages.synthesize import generate

    server, base_url = spawn("--latency", str(args.latency), "--latency-jitter", str(args.jitter), "--canned")
    rates: dict[int, list[float]] = {calls: [] for calls in args.stage_calls}
    try:
        init_ray(num_cpus=2, log_to_driver=False)
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(args.repeats):
                for calls in args.stage_calls:
                    cfg = load_config(
                        "tiny",
                        overrides=[
                            "teacher.kind=openai",
                            f"teacher.base_url={base_url}",
                            "teacher.model=fake",
                            f"teacher.concurrency={args.concurrency}",
                            "teacher.cache=false",
                            "synthesize.verify=false",
                            "synthesize.actors=1",
                            f"synthesize.calls_per_actor={calls}",
                        ],
                    )
                    batch = [{**r, "seed": r["seed"] + 100 * rep + calls} for r in rows]
                    t0 = time.perf_counter()
                    done = generate(cfg, RunDir(tmp), batch).count()  # streamed to Parquet, then counted
                    rates[calls].append(done / (time.perf_counter() - t0))
    finally:
        server.terminate()
        server.wait()
    return {calls: sorted(r)[len(r) // 2] for calls, r in rates.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.1)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--n", type=int, default=640, help="samples for the concurrent run")
    p.add_argument("--n-seq", type=int, default=40, help="samples for the sequential baseline")
    p.add_argument("--repeats", type=int, default=3, help="alternating sequential/concurrent passes; medians reported")
    p.add_argument("--stage", action="store_true", help="also time the stage's Ray Data generation (see above)")
    p.add_argument("--jitter", type=float, default=0.5, help="--stage: server latency x uniform(1-j, 1+j)")
    p.add_argument("--stage-calls", type=int, nargs="+", default=[1, 2], help="--stage: calls_per_actor values")
    args = p.parse_args()
    rows = plan_rows(
        args.n // 3,
        args.n - args.n // 3,
        ["high school students", "professionals"],
        ["concise", "step by step"],
        seed=7,
        heldout_fraction=0.0,
        snippets=[],
        snippet_chars=0,
    )
    server, base_url = spawn("--latency", str(args.latency), "--canned")
    try:
        measure(base_url, rows[:8], 8, seed_offset=10**6)  # warm-up: imports, connection set-up
        seqs, concs = [], []
        for rep in range(args.repeats):  # alternate, so a burst of load from elsewhere hits both sides
            seqs.append(measure(base_url, rows[:: max(1, len(rows) // args.n_seq)][: args.n_seq], 1, 2 * rep))
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
    if args.stage:
        rates = stage_passes(args, rows)
        print(
            f"stage on Ray Data, latency {args.latency * 1000:.0f} ms +- {args.jitter:.0%}, "
            f"{len(rows)} samples, batches of {args.concurrency}:"
        )
        first = args.stage_calls[0]
        for calls, rate in rates.items():
            print(f"  calls_per_actor {calls}: {rate:8.2f} samples/s ({rate / rates[first]:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
