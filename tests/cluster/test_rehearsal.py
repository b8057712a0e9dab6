"""The recipe run the way a KubeRay deployment runs it: `phiray submit` of each jobs/*.smoke.yaml
through the Jobs API of a multi-node cluster (head with no CPUs; cpu, gpu and evaluator nodes as an
ordinary user), the run dir on S3, annotate's judge and synthesize's teacher an OpenAI-compatible server
on 127.0.0.1 (tests/cluster/teacher_server.py); placement asserted from the manifests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from harness import VENV_BIN, Rehearsal
from listeners import ListenerSampler

from phiray.rundir import RunDir

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGES = ["ingest", "dedup", "decontaminate", "annotate", "classify", "filter", "synthesize"]
# On top of the specs' jobs/configs/smoke.yaml, the same for every stage (so the config hashes agree):
# smaller still for 2 cores shared by four Ray nodes.
OVERRIDES = (
    "ingest.sources=[{kind: stdlib, limit: 160}]",
    "annotate.sample_size=60",
    "embed.torch_threads=1",
    "filter.actors=1",
    "synthesize.n_textbooks=8",
    "synthesize.n_exercises=16",
)
MAX_DRIVER_RSS_MB = 1500  # a driver that only plans and counts; a 1.3B model alone would be ~5 GB


def submit_command(r: Rehearsal, stage: str, run_dir: str, *overrides: str) -> list[str]:
    return [
        os.path.join(VENV_BIN, "phiray"),
        "submit",
        stage,
        "--variant",
        "smoke",
        "--run-dir",
        run_dir,
        "--ray-address",
        r.head.address,
        *OVERRIDES,
        *overrides,
    ]


def submit(r: Rehearsal, stage: str, run_dir: str, *overrides: str) -> subprocess.CompletedProcess:
    """Submit ``stage`` and follow it to the end (15 minutes at most: a hung stage fails its test). If we
    stop following it (that timeout, the test's own, Ctrl-C), the job is SIGKILLed too: a job left running
    on the cluster would race the next submission of the same stage into the same run dir."""
    try:
        return subprocess.run(
            submit_command(r, stage, run_dir, *overrides),
            env=r.head.env,
            capture_output=True,
            text=True,
            timeout=900,
            cwd=REPO,
        )
    except BaseException:
        kill_drivers(run_dir, stage)
        raise


def driver_pids(run_dir: str, stage: str) -> list[int]:
    """The job's driver: the `phiray <stage> ... --run-dir <run_dir>` interpreter the Jobs API started
    (not our `phiray submit` client, nor the shell around the entrypoint)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if (
            entry.name.isdigit()
            and "python" in os.path.basename(argv[0])
            and stage in argv
            and run_dir in argv
            and "submit" not in argv
        ):
            pids.append(int(entry.name))
    return pids


def kill_drivers(run_dir: str, stage: str) -> None:
    for pid in driver_pids(run_dir, stage):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main_run(r: Rehearsal) -> str:
    """The run dir of the stage-by-stage run (the kill tests' uninterrupted reference)."""
    return f"{r.bucket}/runs/smoke"


def where(r: Rehearsal, placement: dict) -> dict[str, list[str]]:
    """group -> names of the work that ran there."""
    out: dict[str, list[str]] = {}
    for g in placement.get("work", []):
        out.setdefault(r.group_of(g["node_id"]), []).append(f"{g['name']}x{g['tasks']}")
    return out


def check_placement(r: Rehearsal, stage: str, placement: dict) -> None:
    assert placement["source"].startswith("ray state API"), placement["source"]
    assert r.group_of(placement["driver"]["node_id"]) == "head"
    assert placement["driver"]["peak_rss_mb"] < MAX_DRIVER_RSS_MB, placement["driver"]
    for g in placement["work"]:
        group, res = r.group_of(g["node_id"]), g["resources"]
        if res.get("GPU"):
            assert group == "gpu", g
        if res.get("evaluator") or "Sandbox" in g["name"] or "Verify" in g["name"]:
            assert group == "evaluator", g  # untrusted code only where the evaluator resource is offered
        if group == "head":
            assert not res.get("CPU") and not res.get("GPU"), g  # the head offers no CPU: no task work there


@pytest.mark.timeout(2400)
def test_recipe_stage_by_stage_on_the_rehearsal_cluster(rehearsal, teacher):
    run_dir = main_run(rehearsal)
    rd = RunDir(run_dir)
    report = []
    # Every process of the cluster (head, nodes, their workers and job drivers), sampled through all stages.
    sampler = ListenerSampler(rehearsal.head.process.pid, *(n.process.pid for n in rehearsal.nodes), interval_s=1.0)
    sampler.start()
    for stage in STAGES:
        t0 = time.monotonic()
        result = submit(rehearsal, stage, run_dir, *teacher.overrides)
        assert result.returncode == 0, f"{stage}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        manifest = rd.read_manifest(stage)
        assert manifest is not None, stage
        check_placement(rehearsal, stage, manifest.placement)
        report.append(
            (
                stage,
                time.monotonic() - t0,
                manifest.placement["driver"]["peak_rss_mb"],
                where(rehearsal, manifest.placement),
            )
        )
    print("\nrehearsal: where each stage ran (run dir %s, nodes as %s)" % (run_dir, rehearsal.user))
    for stage, secs, rss, groups in report:
        print(
            f"  {stage:<14} {secs:6.1f} s  driver peak {rss:7.1f} MB  "
            + "; ".join(f"{g}: {', '.join(sorted(n))}" for g, n in sorted(groups.items()))
        )
    seen = sampler.stop()
    commands = " ".join(listener.process for listener in seen)
    assert "gcs_server" in commands and "raylet" in commands, commands
    # No Serve app runs in the rehearsal, so Serve's replica gRPC server on [::] (README "Network exposure")
    # is not among them: every listener must be on loopback.
    assert [str(listener) for listener in seen if not listener.loopback] == []
    groups_used = {g for *_, groups in report for g in groups}
    assert {"cpu", "evaluator"} <= groups_used
    synth = rd.read_manifest("synthesize").placement
    assert any("Verify" in g["name"] and rehearsal.group_of(g["node_id"]) == "evaluator" for g in synth["work"])
