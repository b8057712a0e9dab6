"""What `phiray submit` costs: the same small ingest run directly (`phiray ingest`, which starts its own
local Ray) vs submitted to a running local Ray head through the Jobs API (working-dir upload, runtime env,
driver joining the cluster, logs followed to SUCCEEDED). Ratio = submitted / direct wall time; the second
submission reuses the uploaded package.

    .venv/bin/python benchmarks/cluster.py [--documents 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100, help="stdlib files ingested per run.")
    args = parser.parse_args()
    from cluster_fixtures import VENV_BIN, start_head, stop_head

    phiray = os.path.join(VENV_BIN, "phiray")
    stage_args = [
        "--preset",
        "tiny",
        "--config",
        "jobs/configs/smoke.yaml",
        f"ingest.sources=[{{kind: stdlib, limit: {args.documents}}}]",
    ]
    with tempfile.TemporaryDirectory(prefix="phiray-bench-") as tmp:
        t0 = time.perf_counter()
        head = start_head(num_cpus=2)
        head_s = time.perf_counter() - t0
        try:
            local_env = {k: v for k, v in head.env.items() if k != "RAY_ADDRESS"}
            direct = timed([phiray, "ingest", "--run-dir", f"{tmp}/direct", *stage_args], local_env)
            submitted = [
                timed(
                    [
                        phiray,
                        "submit",
                        "ingest",
                        "--ray-address",
                        head.address,
                        "--run-dir",
                        f"{tmp}/submit{i}",
                        *stage_args[4:],
                    ],
                    head.env,
                )
                for i in range(2)
            ]
        finally:
            stop_head(head)
    print(f"ingest of {args.documents} stdlib files; head start (not in the ratio) {head_s:.1f}s")
    print(f"direct `phiray ingest` (starts a local Ray): {direct:.1f}s")
    print(f"`phiray submit` to a running head: first {submitted[0]:.1f}s, second {submitted[1]:.1f}s")
    print(f"ratio submitted/direct: {submitted[0] / direct:.2f} (first), {submitted[1] / direct:.2f} (second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
