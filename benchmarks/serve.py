"""Serve throughput: `phiray serve` (Ray Serve LLM + vLLM, evaluator beside it) vs a bare vLLM OpenAI server on
the same checkpoint; closed-loop clients on /v1/completions, rounds alternating A B A B, each preceded by a
warm-up at the measured concurrency. Prints req/s per round, the phiray/bare ratio (goal >= 0.9x) and 5xx.

    .venv/bin/python benchmarks/serve.py [--rounds 2] [--duration 20] [--warmup 5] [--clients 32]
                                         [--max-tokens 32] [--model CHECKPOINT]

Without --model it serves a tiny random Phi with heads of 64 (tests/vllm_fixtures.py): the point is the
serving path (proxy -> ingress -> engine), not the model. Both servers stay up for the whole run; the one not
being measured is idle. On a shared 2-core machine the figures are noisy: read the load average printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from serve_fixtures import free_port  # noqa: E402
from vllm_fixtures import start_vllm_server, stop, vllm_env, wait_ready  # noqa: E402

NAME = "bench"


def start_phiray_serve(model: str, port: int, log: Path, ray_tmp: str, max_batch: int) -> subprocess.Popen:
    env = {**vllm_env(), "RAY_TMPDIR": ray_tmp, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    cmd = [
        sys.executable,
        "-m",
        "phiray",
        "serve",
        "--model",
        model,
        "--port",
        str(port),
        "run.num_cpus=2",
        f"serve.model_name={NAME}",
        f"serve.max_batch_size={max_batch}",
        "serve.max_model_len=256",
    ]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def measure(url: str, body: dict, clients: int, warmup_s: float, duration_s: float) -> dict:
    from phiray.serve.load import run_load

    asyncio.run(run_load(url, body, clients, warmup_s))
    return asyncio.run(run_load(url, body, clients, duration_s)).summary()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Checkpoint directory (default: a tiny random Phi).")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds (each server measured once per round).")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds of measured load per server per round.")
    parser.add_argument("--warmup", type=float, default=5.0, help="Seconds of unmeasured load before each measure.")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent closed-loop clients.")
    parser.add_argument("--max-tokens", type=int, default=32, help="Tokens generated per request.")
    parser.add_argument("--max-batch", type=int, default=32, help="Engine max_num_seqs for both servers.")
    args = parser.parse_args()

    from phiray.runtime import prepare_environment

    prepare_environment(local=True)
    tmp = Path(tempfile.mkdtemp(prefix="srvb", dir="/tmp"))
    model = args.model
    if model is None:
        from vllm_fixtures import build_vllm_checkpoint

        model = str(build_vllm_checkpoint(tmp / "model"))
    ports = {"phiray": free_port(), "vllm": free_port()}
    logs = {name: tmp / f"{name}.log" for name in ports}
    load_start = os.getloadavg()
    procs = {"phiray": start_phiray_serve(model, ports["phiray"], logs["phiray"], str(tmp / "ray"), args.max_batch)}
    try:
        wait_ready(f"http://127.0.0.1:{ports['phiray']}", procs["phiray"], log=logs["phiray"], model=NAME)
        procs["vllm"] = start_vllm_server(
            Path(model), ports["vllm"], NAME, logs["vllm"], extra=["--max-num-seqs", str(args.max_batch)]
        )
        wait_ready(f"http://127.0.0.1:{ports['vllm']}", procs["vllm"], log=logs["vllm"], model=NAME)
        body = {"model": NAME, "prompt": "def fibonacci(n):\n", "max_tokens": args.max_tokens, "temperature": 0.8}
        rounds: list[dict[str, dict]] = []
        for r in range(args.rounds):
            rounds.append({})
            for name in ("phiray", "vllm"):
                res = measure(f"http://127.0.0.1:{ports[name]}", body, args.clients, args.warmup, args.duration)
                rounds[-1][name] = res
                print(f"round {r + 1} {name:6s} {json.dumps(res)}", flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
    load_end = os.getloadavg()
    rps = {name: [rd[name]["rps"] for rd in rounds] for name in ports}
    mean = {name: statistics.mean(v) for name, v in rps.items()}
    ratio = mean["phiray"] / mean["vllm"] if mean["vllm"] else float("inf")
    errors = {name: sum(rd[name]["5xx"] + rd[name]["failures"] for rd in rounds) for name in ports}
    print(f"\nreq/s per round: phiray serve {rps['phiray']}, bare vLLM {rps['vllm']}")
    print(
        f"phiray serve / bare vLLM requests/s at {args.clients} clients: {ratio:.2f}x (goal >= 0.9x); "
        f"5xx+failures: phiray {errors['phiray']}, vLLM {errors['vllm']}; load average "
        f"{load_start[0]:.1f} -> {load_end[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
