"""Helpers for the synthesize tests: run the stage in-process or as a real subprocess."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path

from phiray.config import RunConfig, load_config
from phiray.rundir import Manifest, RunDir

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(*overrides: str) -> RunConfig:
    """The tiny preset with only `synthesize` in the run (no upstream stage needed)."""
    return load_config("tiny", overrides=["run.stages=[synthesize]", *overrides])


def run_synthesize(run_dir: Path, cfg: RunConfig) -> Manifest:
    from phiray.pipeline import run_stage
    from phiray.stages import STAGE_BY_NAME, STAGES

    return run_stage(STAGE_BY_NAME["synthesize"], cfg, RunDir(run_dir), {s.name: s for s in STAGES})


def spawn_synthesize(run_dir: Path, *overrides: str, log_path: Path) -> subprocess.Popen:
    """`python -m phiray synthesize` in its own session (so a kill takes its whole process group,
    Ray's local cluster included), with a private Ray temp dir and no inherited cluster address."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    cmd = [
        sys.executable,
        "-m",
        "phiray",
        "synthesize",
        "--run-dir",
        str(run_dir),
        "--preset",
        "tiny",
        "run.stages=[synthesize]",
        "run.num_cpus=2",
        *overrides,
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    # An interrupted or failed test must not leave the stage (and its Ray cluster, its engines) running.
    atexit.register(_kill_group, proc)
    return proc


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
