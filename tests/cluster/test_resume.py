"""Kill tests on the rehearsal cluster: SIGKILL a stage's job driver, or a whole worker node, in the middle
of the stage, resubmit, and check against the LLM server's request log and the run dir on S3:

- 0 requests repeated: no request whose answer the request cache held when the next attempt began
  reaches the server again (requests in flight at the kill, answered but not yet stored, may be);
- 0 answers lost: every answer stored before the kill is in the final cache;
- outputs identical to the uninterrupted stage-by-stage run (test_rehearsal.py), which ran the same
  stage, same hashed config, on the same upstream outputs (copied here before each kill).

The killed attempts run with ``teacher.concurrency=1`` (speed-only: not in any config hash), so that a
kill lands while most requests are still to come; the reference ran at the default concurrency.

pretrain: SIGKILL the driver once checkpoints are on S3; the resubmitted job resumes from the last
complete one and its per-step loss, learning rate and gradient norm equal the uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from harness import Rehearsal, kill_node, rejoin
from teacher_server import TeacherServer
from test_rehearsal import REPO, STAGES, driver_pids, kill_drivers, main_run, submit, submit_command

from phiray.rundir import CONFIG_FILE, RunDir
from phiray.teacher.cache import RequestCache

PIPELINE = [*STAGES, "tokenize", "pretrain"]
SLOW = ("teacher.concurrency=1", "annotate.batch_size=4", "synthesize.calls_per_actor=1")
# Columns that say how an answer was obtained (from the cache or the server), not what it was.
ACCOUNTING = {"cached", "attempts"}


@dataclass
class Attempts:
    """One kill-and-resume of a stage, as the server and the cache saw it."""

    answered: list[str]  # cache keys the server answered, in order, over every attempt
    stored_at_kill: set[str]  # the cache right after the kill
    repeated: list[str]  # answered after a point at which the cache already held them: must be empty
    resubmitted: bool
    seconds: float

    def resent(self) -> int:
        """Requests answered more than once (in flight at the kill: answered, never stored)."""
        return sum(n - 1 for n in Counter(self.answered).values())


def build_reference(r: Rehearsal, teacher: TeacherServer, stage: str, *reference_overrides: str) -> None:
    """Give the reference (the stage-by-stage run, test_rehearsal.py) whatever it lacks of ``stage`` and
    its upstream, when this module runs without it. Called from fixtures, outside the kill tests' own
    timeouts (``func_only``), which then time the kill and the resume alone; each submission here is
    still bounded (``submit``'s 15 minutes), so a hung stage fails rather than waits."""
    reference = RunDir(main_run(r))
    for name in PIPELINE[: PIPELINE.index(stage) + 1]:
        if reference.read_manifest(name) is None:
            extra = reference_overrides if name == stage else ()
            result = submit(r, name, reference.location, *teacher.overrides, *extra)
            assert result.returncode == 0, f"{name}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def prepare(r: Rehearsal, stage: str, case: str) -> RunDir:
    """A fresh run dir holding the reference run's outputs of every stage before ``stage``."""
    reference = RunDir(main_run(r))
    upstream = PIPELINE[: PIPELINE.index(stage)]
    missing = [name for name in [*upstream, stage] if reference.read_manifest(name) is None]
    assert not missing, f"the reference run lacks {missing}: nothing to compare with"
    rd = RunDir(f"{r.bucket}/runs/{stage}-{case}")
    fs = reference.fs
    for path in [CONFIG_FILE, *upstream]:
        pafs.copy_files(reference.path(path), rd.path(path), source_filesystem=fs, destination_filesystem=fs)
    return rd


@pytest.fixture
def annotate_reference(rehearsal, teacher) -> None:
    build_reference(rehearsal, teacher, "annotate")


@pytest.fixture
def synthesize_reference(rehearsal, teacher) -> None:
    build_reference(rehearsal, teacher, "synthesize")


@pytest.fixture
def pretrain_reference(rehearsal, teacher) -> None:
    build_reference(rehearsal, teacher, "pretrain", *TRAIN)


def stored_keys(rd: RunDir, stage: str) -> set[str]:
    return {e["hash"] for e in RequestCache(rd.fs_path(stage, "cache")).entries()}


def kill_and_resume(
    r: Rehearsal, teacher: TeacherServer, stage: str, rd: RunDir, kills: list[tuple[int, Callable[[], None]]], log: Path
) -> Attempts:
    """Submit ``stage``; for each ``(n, kill)`` call ``kill()`` once the server has answered ``n`` of its
    requests; resubmit if the job did not survive; account for every request the server answered."""
    t0, mark = time.monotonic(), teacher.mark()
    checkpoints: list[tuple[int, set[str]]] = []  # (log position, the cache then): nothing held may be asked again
    with open(log, "w") as out:
        proc = subprocess.Popen(
            submit_command(r, stage, rd.location, *teacher.overrides, *SLOW),
            env=r.head.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        for kill_after, kill in kills:
            deadline = time.monotonic() + 600
            while len(teacher.answered_since(mark)) < kill_after:
                assert proc.poll() is None, f"{stage} ended before the kill:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"{stage}: no {kill_after} answers in 600 s"
                time.sleep(0.05)
            kill()
            checkpoints.append((teacher.mark(), stored_keys(rd, stage)))
        rc = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:  # leaving on an error: the job must not outlive the test
            proc.kill()
            kill_drivers(rd.location, stage)
    if rc != 0:  # every writer of the killed job is gone: what the cache holds now is the resume's start
        checkpoints.append((teacher.mark(), stored_keys(rd, stage)))
        result = submit(r, stage, rd.location, *teacher.overrides, *SLOW)
        assert result.returncode == 0, f"{stage} resubmitted: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    at_kill, final = checkpoints[0][1], stored_keys(rd, stage)
    assert at_kill <= final, f"{len(at_kill - final)} answers stored before the kill are gone from the cache"
    answered = teacher.answered_since(mark)
    # The log's keys are the cache's (else "nothing repeated" below would hold vacuously): every answer is stored.
    assert set(answered) <= final, f"{len(set(answered) - final)} answered requests have no answer in the cache"
    repeated = [k for since, held in checkpoints for k in teacher.answered_since(since) if k in held]
    return Attempts(answered, at_kill, repeated, rc != 0, time.monotonic() - t0)


def outputs(rd: RunDir, stage: str, names: tuple[str, ...]) -> dict[str, list[dict]]:
    """Every row of each ``<stage>/<name>`` Parquet dataset, in a canonical order, without the columns
    that say how an answer was obtained."""
    out = {}
    for name in names:
        if not rd.exists(stage, name):
            out[name] = []
            continue
        table = pq.ParquetDataset(rd.path(stage, name), filesystem=rd.fs).read()
        rows = [{k: v for k, v in row.items() if k not in ACCOUNTING} for row in table.to_pylist()]
        out[name] = sorted(rows, key=lambda row: json.dumps(row, sort_keys=True, default=str))
    return out


def actor_group(r: Rehearsal, class_part: str, timeout_s: float = 120.0) -> str:
    """The group of the node running the live actor whose class names ``class_part``: Ray titles the
    actor's process ``ray::MapWorker(MapBatches(<class>))``; its parent is the raylet of its node, whose
    command line names that node's temp dir (read from /proc: no state-API round trip mid-kill)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid in _pids_titled(f"({class_part})"):
            group = _node_of(r, pid)
            if group is not None:
                return group
        time.sleep(0.2)
    raise AssertionError(f"no live {class_part} actor on any worker node")


def _pids_titled(part: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and part.encode() in (entry / "cmdline").read_bytes():
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def _node_of(r: Rehearsal, pid: int) -> str | None:
    """The group whose node's temp dir an ancestor of ``pid`` names on its command line."""
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return None
        for node in r.nodes:
            if node.temp_dir.encode() in cmdline:
                return node.group
    return None


def kill_driver(rd: RunDir, stage: str) -> Callable[[], None]:
    def kill() -> None:
        pids = driver_pids(rd.location, stage)
        assert len(pids) == 1, f"expected one {stage} driver for {rd.location}, found {pids}"
        os.kill(pids[0], signal.SIGKILL)

    return kill


def check(
    r: Rehearsal, attempts: Attempts, rd: RunDir, stage: str, names: tuple[str, ...], cache_hits: int, case: str
) -> None:
    REPORT.append(
        f"  {stage:<11} {case:<7} {attempts.seconds:6.1f} s  answered {len(attempts.answered):3d}  "
        f"stored at the kill {len(attempts.stored_at_kill):3d}  re-sent (in flight, unstored) "
        f"{attempts.resent():2d}  repeated {len(attempts.repeated)}  resubmitted {attempts.resubmitted}"
    )
    print("\n" + REPORT[-1])
    assert attempts.stored_at_kill, "the kill landed before any answer was stored: it proves nothing"
    assert len(set(attempts.answered)) > len(attempts.stored_at_kill), "the kill landed after the last answer"
    assert attempts.repeated == [], f"{len(attempts.repeated)} stored answers were asked for again"
    if attempts.resubmitted:  # the resubmitted job was served every stored answer from the cache
        assert cache_hits >= len(attempts.stored_at_kill)
    assert outputs(rd, stage, names) == outputs(RunDir(main_run(r)), stage, names)


REPORT: list[str] = []
ANNOTATE_OUTPUTS = ("labels", "rejected")
SYNTHESIZE_OUTPUTS = ("textbooks", "exercises", "validation", "heldout", "rejected")


@pytest.fixture(scope="module", autouse=True)
def kill_report():
    """Prints what the kill tests saw, after the last of them."""
    yield
    if REPORT:
        print("\nkill tests: every request of each stage against the server's log\n" + "\n".join(REPORT))


@pytest.fixture
def slow_teacher(teacher):
    """Answers take 0.5 s while a kill test runs, so the kill lands with most requests still to come."""
    before, teacher.server.latency_s = teacher.server.latency_s, 0.5
    yield teacher
    teacher.server.latency_s = before


class NodeKill:
    """Kills the node of a live ``actor_class`` actor, and at once starts its replacement (as KubeRay
    replaces a lost pod) in the background: a stage may need that group again (the evaluator's)."""

    def __init__(self, r: Rehearsal, actor_class: str):
        self.r, self.actor_class = r, actor_class
        self.group: str | None = None
        self._rejoin: threading.Thread | None = None
        self._error: list[BaseException] = []

    def __call__(self) -> None:
        self.group = actor_group(self.r, self.actor_class)
        kill_node(self.r, self.group)
        self._rejoin = threading.Thread(target=self._replace, daemon=True)
        self._rejoin.start()

    def _replace(self) -> None:
        try:
            rejoin(self.r, self.group)
        except BaseException as err:  # noqa: BLE001  (raised in the test's thread by wait())
            self._error.append(err)

    def wait(self) -> None:
        if self._rejoin is not None:
            self._rejoin.join(timeout=600)
        if self._error:
            raise self._error[0]


@pytest.mark.timeout(1200, func_only=True)
def test_annotate_resumes_after_its_driver_is_killed(rehearsal, annotate_reference, slow_teacher, tmp_path):
    rd = prepare(rehearsal, "annotate", "driver")
    attempts = kill_and_resume(
        rehearsal, slow_teacher, "annotate", rd, [(12, kill_driver(rd, "annotate"))], tmp_path / "submit.log"
    )
    assert attempts.resubmitted, "a job whose driver was SIGKILLed reported success"
    check(
        rehearsal,
        attempts,
        rd,
        "annotate",
        ANNOTATE_OUTPUTS,
        rd.read_manifest("annotate").metrics["teacher"]["cache_hits"],
        "driver",
    )


@pytest.mark.timeout(1200, func_only=True)
def test_annotate_survives_losing_the_node_of_its_labelling_actor(
    rehearsal, annotate_reference, slow_teacher, tmp_path
):
    rd = prepare(rehearsal, "annotate", "node")
    kill = NodeKill(rehearsal, "LabelBatch")
    try:
        attempts = kill_and_resume(rehearsal, slow_teacher, "annotate", rd, [(3, kill)], tmp_path / "submit.log")
    finally:
        kill.wait()
    check(
        rehearsal,
        attempts,
        rd,
        "annotate",
        ANNOTATE_OUTPUTS,
        rd.read_manifest("annotate").metrics["teacher"]["cache_hits"],
        f"node:{kill.group}",
    )


@pytest.mark.cluster_long
@pytest.mark.timeout(1800, func_only=True)
def test_synthesize_survives_a_node_loss_then_resumes_after_its_driver_is_killed(
    rehearsal, synthesize_reference, slow_teacher, tmp_path
):
    """One run, two kills (a synthesize job costs minutes here): the node of the generation actor once 2
    answers are in (Ray Data restarts the actor elsewhere and redoes its batch), then the driver once 10
    are (the job fails); the resubmitted job finishes from the cache."""
    rd = prepare(rehearsal, "synthesize", "kills")
    node_kill = NodeKill(rehearsal, "GenerateBatch")
    try:
        attempts = kill_and_resume(
            rehearsal,
            slow_teacher,
            "synthesize",
            rd,
            [(2, node_kill), (10, kill_driver(rd, "synthesize"))],
            tmp_path / "submit.log",
        )
    finally:
        node_kill.wait()
    assert attempts.resubmitted, "a job whose driver was SIGKILLed reported success"
    check(
        rehearsal,
        attempts,
        rd,
        "synthesize",
        SYNTHESIZE_OUTPUTS,
        rd.read_manifest("synthesize").metrics["cache_hits"],
        f"node:{node_kill.group}+driver",
    )


# Speed-only: a loss per step (so the resumed sequence is compared step by step) and a checkpoint every 3.
TRAIN = ("pretrain.log_every=1", "pretrain.checkpoint_every=3")
CURVE_FIELDS = ("step", "loss", "lr", "grad_norm")


def checkpoints(rd: RunDir) -> list[str]:
    """Checkpoint folders Ray Train has written for the stage's run (``pretrain-<spec hash>``)."""
    runs = [d for d in rd.listdir("pretrain", "checkpoints") if d.startswith("pretrain-")]
    return [c for run in runs for c in rd.listdir("pretrain", "checkpoints", run) if c.startswith("checkpoint_")]


def curve(rd: RunDir) -> tuple[list[dict], list[dict]]:
    metrics = rd.read_manifest("pretrain").metrics
    return (
        [{k: r[k] for k in CURVE_FIELDS} for r in metrics["curve"]["train"]],
        [dict(r) for r in metrics["curve"]["val"]],
    )


@pytest.mark.cluster_long
@pytest.mark.timeout(1800, func_only=True)
def test_pretrain_resumes_from_its_last_checkpoint_on_s3_after_its_driver_is_killed(
    rehearsal, pretrain_reference, teacher, tmp_path
):
    """SIGKILL the pretrain driver once three checkpoints are on S3 (the last may be mid-upload); the
    resubmitted job resumes from the last complete one (Ray Train restores its run from the storage path)
    and its steps, losses, learning rates and gradient norms continue exactly the uninterrupted run's."""
    reference = RunDir(main_run(rehearsal))
    rd = prepare(rehearsal, "pretrain", "driver")
    log = tmp_path / "submit.log"
    t0 = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            submit_command(rehearsal, "pretrain", rd.location, *teacher.overrides, *TRAIN),
            env=rehearsal.head.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        deadline = time.monotonic() + 900
        while len(checkpoints(rd)) < 3:
            assert proc.poll() is None, f"pretrain ended before the kill:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no three checkpoints in 900 s"
            time.sleep(0.3)
        kill_driver(rd, "pretrain")()
        assert proc.wait(timeout=600) != 0, "a job whose driver was SIGKILLed reported success"
    finally:
        if proc.poll() is None:
            proc.kill()
            kill_drivers(rd.location, "pretrain")
    at_kill = len(checkpoints(rd))
    result = submit(rehearsal, "pretrain", rd.location, *teacher.overrides, *TRAIN)
    assert result.returncode == 0, f"pretrain resubmitted: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    resumes = rd.read_manifest("pretrain").metrics["resumes"]
    steps = rd.read_manifest("pretrain").rows["steps"]
    REPORT.append(
        f"  pretrain    driver  {time.monotonic() - t0:6.1f} s  checkpoints at the kill {at_kill}  "
        f"resumed at step {resumes} of {steps}"
    )
    print("\n" + REPORT[-1])
    assert len(resumes) == 1 and 3 <= resumes[0] < steps, resumes
    train, val = curve(rd)
    ref_train, ref_val = curve(reference)
    assert [r["step"] for r in train] == list(range(1, steps + 1))  # every step once: none lost, none redone
    assert _close(train, ref_train), (train, ref_train)
    assert _close(val, ref_val), (val, ref_val)


def _close(rows: list[dict], expected: list[dict], rel: float = 1e-5) -> bool:
    """Same records, numbers equal to ``rel`` (DeepSpeed on CPU restores fp32 state exactly; gloo's
    all-reduce order may differ in the last bits)."""
    if len(rows) != len(expected):
        return False
    for row, want in zip(rows, expected):
        if row.keys() != want.keys():
            return False
        for key, value in row.items():
            if isinstance(value, float) and isinstance(want[key], (int, float)):
                if abs(value - want[key]) > rel * max(1.0, abs(want[key])):
                    return False
            elif value != want[key]:
                return False
    return True
