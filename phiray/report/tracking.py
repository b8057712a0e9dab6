"""The report's experiment-tracking section: where each training phase's and sweep trial's TensorBoard event
files are (``phiray.train.tracking`` writes them), links to them, and the command that opens them."""

from __future__ import annotations

import posixpath
import shlex

import pyarrow.fs as pafs

from phiray.report.render import Section
from phiray.rundir import RunDir
from phiray.train.spec import TENSORBOARD_DIR

PHASES = ("pretrain", "grow", "finetune", "control")
SWEEP_TRIALS = "sweep/tune"
EVENT_PREFIX = "events.out.tfevents."
MLFLOW_DIR = "mlflow"


def event_files(rd: RunDir, relpath: str) -> list[pafs.FileInfo]:
    """Every TensorBoard event file under ``relpath`` (recursive; [] when it does not exist)."""
    if not rd.exists(relpath):
        return []
    infos = rd.fs.get_file_info(pafs.FileSelector(rd.path(relpath), recursive=True))
    return [i for i in infos if i.type == pafs.FileType.File and posixpath.basename(i.path).startswith(EVENT_PREFIX)]


def tracked_dirs(rd: RunDir) -> list[tuple[str, str, int, int]]:
    """(what, run-relative directory, event files, bytes) for each phase and the sweep that left events."""
    found = []
    for phase in PHASES:
        files = event_files(rd, posixpath.join(phase, TENSORBOARD_DIR))
        if files:
            found.append((phase, posixpath.join(phase, TENSORBOARD_DIR), len(files), sum(f.size or 0 for f in files)))
    trial_files = event_files(rd, SWEEP_TRIALS)
    if trial_files:
        root = rd.path(SWEEP_TRIALS)
        trials = {posixpath.relpath(posixpath.dirname(f.path), root).split("/")[0] for f in trial_files}
        found.append(
            (f"sweep ({len(trials)} trials)", SWEEP_TRIALS, len(trial_files), sum(f.size or 0 for f in trial_files))
        )
    return found


def tensorboard_command(rd: RunDir) -> str | None:
    """``tensorboard --logdir RUN`` (TensorBoard finds every event directory below it, one run each, named by
    its path: ``pretrain/tensorboard``, ``sweep/tune/<trial_id>``, ...); None when the run has no events."""
    if not tracked_dirs(rd):
        return None
    return f"tensorboard --logdir {shlex.quote(rd.location if not rd.is_local else rd.root)}"


def tracking(rd: RunDir) -> Section:
    sec = Section("Experiment tracking")
    found = tracked_dirs(rd)
    if not found:
        return sec.p(
            "No TensorBoard event files in this run directory (no training phase or sweep has run, "
            "or train.tracking.tensorboard=false)."
        )
    sec.p(
        "TensorBoard event files of every training phase (Ray Train callback, one point per report) and of "
        "every sweep trial (Ray Tune logger callback, x axis = optimizer step, the trial's point as hparams). "
        "Tags: train/loss, train/lr, train/grad_norm, train/tokens_per_s, train/mfu (when the device's peak is "
        "known), eval/val_loss[/source], eval/pass_at_1 (sweeps), data/sequences/source (sweeps)."
    )
    sec.table(["phase", "directory", "event files", "bytes"], [list(row) for row in found])
    sec.links([(f"{what}: {rel}/", posixpath.join("..", rel) + "/") for what, rel, _, _ in found])
    sec.code("Open them in TensorBoard:", tensorboard_command(rd))
    if rd.exists(MLFLOW_DIR):
        sec.code(
            "MLflow runs (train.tracking.mlflow):",
            f"mlflow ui --backend-store-uri sqlite:///{rd.path(MLFLOW_DIR)}/mlflow.db",
        )
    return sec
