"""The sweep as a user runs it: `phiray sweep` in a subprocess on the tiny preset (8 trials, ASHA, 2 CPUs),
and a sweep whose driver is SIGKILLed mid-run, then finished with `phiray sweep --resume`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq
import pytest
from sweep_fixtures import SWEEP_OVERRIDES, make_packed_run

from phiray.config import load_config
from phiray.rundir import RunDir
from phiray.tune.trainable import TRIALS_DIR, read_attempts

pytestmark = pytest.mark.slow
SOURCES = "sweep.sources=[code,textbooks,exercises]"


def _env() -> dict[str, str]:
    # A private Ray temp dir: the CLI starts its own local cluster, never joining another one on the machine.
    return {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rs", dir="/tmp"), "PYTHONUNBUFFERED": "1"}


def _phiray(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "phiray", *args],
        env=_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _finished(proc: subprocess.Popen, timeout: float) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out


def test_tiny_preset_sweep_of_8_trials_with_asha_under_10_minutes(tmp_path):
    rd = make_packed_run(tmp_path / "run")
    start = time.monotonic()
    _finished(_phiray("sweep", "--run-dir", rd.location, "--preset", "tiny", "run.num_cpus=2", SOURCES), 900)
    elapsed = time.monotonic() - start
    rows = pq.read_table(rd.path("sweep/results.parquet")).to_pylist()
    assert len(rows) >= 8 and elapsed < 600, elapsed
    assert any(r["status"] == "stopped_early" for r in rows)  # ASHA cut some trials short ...
    assert all(r["steps"] < r["max_steps"] for r in rows if r["stopped_early"])  # ... and the table says so
    assert any(r["status"] == "completed" for r in rows)
    assert rd.exists("sweep/results.csv") and rd.read_bytes("sweep/plot.png")[:4] == b"\x89PNG"
    best = load_config("tiny", config_file=rd.path("sweep/best.yaml"))
    assert set(best.pretrain.mixture) == {"code", "textbooks", "exercises"}
    manifest = rd.read_manifest("sweep")
    print(f"\ntiny sweep: {len(rows)} trials in {elapsed:.0f}s; headline {manifest.headline}")


def _final_trials(rd: RunDir) -> set[str]:
    return {t for t in rd.listdir(TRIALS_DIR) if rd.exists(f"{TRIALS_DIR}/{t}/final.json")}


def _midway(rd: RunDir, done: set[str]) -> bool:
    """A trial that is not done reported 3 checkpoints (Tune snapshots at least every 2: num_to_keep)."""
    return any(
        a.get("last_step", 0) >= 30 for t in rd.listdir(TRIALS_DIR) if t not in done for a in read_attempts(rd, t)
    )


# Long enough that the trial caught mid-run (at step >= 30) is still running ~2 s later, when the kill
# lands: at 120 steps a quiet machine finished it in that window and left no trial interrupted.
STEPS = 400


def test_killed_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    rd = make_packed_run(tmp_path / "run")
    # The fixture's shrunk shapes (explicit, so the test does not depend on the preset's model size).
    args = [
        "--preset",
        "tiny",
        *SWEEP_OVERRIDES,
        "run.num_cpus=2",
        "sweep.num_trials=4",
        "sweep.max_concurrent=1",
        f"sweep.max_steps={STEPS}",
        "sweep.eval_every=10",
        f"sweep.grace_period={STEPS}",
    ]  # no ASHA stops
    driver = _phiray("sweep", "--run-dir", rd.location, *args)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and driver.poll() is None:
        done = _final_trials(rd)
        if len(done) >= 2 and _midway(rd, done):
            time.sleep(1.5)  # > the 1 s experiment snapshot period: Tune has recorded that checkpoint
            break
        time.sleep(0.5)
    assert driver.poll() is None, "the sweep finished before it could be interrupted"
    os.kill(driver.pid, signal.SIGKILL)  # the driver dies mid-trial, with no chance to clean up
    driver.wait()
    # Then at once its orphaned Ray processes (the node goes down). Waiting here let a fast trial run on to
    # its end on a quiet machine, leaving no trial interrupted.
    os.killpg(driver.pid, signal.SIGKILL)
    done_before = _final_trials(rd)
    attempts_before = {t: read_attempts(rd, t) for t in rd.listdir(TRIALS_DIR)}
    assert not rd.exists("sweep/_manifest.json") and len(done_before) >= 2

    resumed = _phiray("sweep", "--run-dir", rd.location, "--resume")
    try:
        _finished(resumed, 900)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
    manifest = rd.read_manifest("sweep")
    assert manifest.metrics["resumed"] is True
    rows = pq.read_table(rd.path("sweep/results.parquet")).to_pylist()
    assert len(rows) == 4 and all(r["status"] == "completed" and r["steps"] == STEPS for r in rows)
    continued = []
    for row in rows:
        attempts = read_attempts(rd, row["trial_id"])
        trained = [a for a in attempts if a["steps_trained"] > 0]
        if row["trial_id"] in done_before:  # finished before the kill: never trained again
            assert len(trained) == 1 and trained[0]["finished"], attempts
            assert all(a["replayed"] for a in attempts if a not in trained)
        elif attempts_before.get(row["trial_id"]):  # interrupted: continued from its last checkpoint
            last = max(attempts, key=lambda a: a["attempt"])
            assert last["start_step"] > 0 and last["finished"] and last["last_step"] == STEPS, attempts
            continued.append(row["trial_id"])
    assert continued, "no trial was interrupted mid-run"
    print(
        f"\nresume: {len(done_before)} trials done before the kill; attempts "
        f"{ {r['trial_id']: r['attempts'] for r in rows} }"
    )
