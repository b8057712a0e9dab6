"""Serve throughput: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients, dynamic batching
(@serve.batch, max_batch_size 32) vs unbatched (max_batch_size 1), same app, same run; ratio at 32.

    .venv/bin/python benchmarks/serve.py [--duration 10] [--max-tokens 32] [--model CHECKPOINT]

Without --model it serves a tiny random Phi checkpoint (tests/serve_fixtures.py): the point is the serving
path (HTTP proxy -> ingress -> batched model), not the model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from serve_fixtures import free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Checkpoint directory (default: a tiny random Phi).")
    parser.add_argument("--duration", type=float, default=10.0, help="Seconds of load per level.")
    parser.add_argument("--max-tokens", type=int, default=32, help="Tokens generated per request.")
    parser.add_argument("--levels", default="1,8,32", help="Concurrent clients, comma-separated.")
    parser.add_argument("--batch", type=int, default=32, help="max_batch_size of the batched run.")
    parser.add_argument("--wait", type=float, default=0.05, help="batch_wait_timeout_s of the batched run.")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    from phiray.runtime import prepare_environment

    prepare_environment(local=True)
    import ray
    from ray import serve

    from phiray.serve.app import build_app
    from phiray.serve.load import run_load

    tmp = Path(tempfile.mkdtemp(prefix="srvb", dir="/tmp"))
    model = args.model
    if model is None:
        from serve_fixtures import build_tiny_checkpoint

        model = str(build_tiny_checkpoint(tmp / "model"))
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / "ray"), log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    body = {"model": "bench", "prompt": "def fibonacci(n):\n", "max_tokens": args.max_tokens, "temperature": 0.8}
    modes = {"batched": {"max_batch_size": args.batch, "batch_wait_timeout_s": args.wait},
             "unbatched": {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}}
    results: dict[str, dict[int, dict]] = {}
    for mode, batching in modes.items():
        serve.run(build_app({"model": model, "model_name": "bench", **batching}), name=mode, route_prefix="/")
        asyncio.run(run_load(f"http://127.0.0.1:{port}", body, 2, 2.0))  # warm-up
        results[mode] = {}
        handle = serve.get_deployment_handle("model", app_name=mode)
        before = handle.info.remote().result()
        for level in levels:
            res = asyncio.run(run_load(f"http://127.0.0.1:{port}", body, level, args.duration))
            info = handle.info.remote().result()  # rows / batches during this level: the mean batch size
            mean_batch = (info["rows"] - before["rows"]) / max(info["batches"] - before["batches"], 1)
            results[mode][level], before = {**res.summary(), "mean_batch": round(mean_batch, 1)}, info
            print(f"{mode:9s} {json.dumps(results[mode][level])}", flush=True)
        serve.delete(mode)
    serve.shutdown()
    ray.shutdown()

    print(f"\n{'clients':>7} | {'batched rps':>11} {'p50 ms':>8} {'p99 ms':>8} | {'unbatched rps':>13} {'p50 ms':>8} "
          f"{'p99 ms':>8} | ratio")
    for level in levels:
        b, u = results["batched"][level], results["unbatched"][level]
        ratio = b["rps"] / u["rps"] if u["rps"] else float("inf")
        print(f"{level:>7} | {b['rps']:>11} {b['p50_ms']:>8} {b['p99_ms']:>8} | {u['rps']:>13} {u['p50_ms']:>8} "
              f"{u['p99_ms']:>8} | {ratio:.2f}x")
    top = levels[-1]
    ratio = results["batched"][top]["rps"] / max(results["unbatched"][top]["rps"], 1e-9)
    print(f"\nbatched/unbatched requests/s at {top} clients: {ratio:.2f}x (goal >= 3x); "
          f"5xx: {sum(r['5xx'] for m in results.values() for r in m.values())}, "
          f"failures: {sum(r['failures'] for m in results.values() for r in m.values())}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
