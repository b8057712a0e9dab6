"""Experiment tracking: TensorBoard event files (and, optionally, MLflow runs) of every training phase and
every sweep trial, written through Ray's own hooks.

- Training phases (pretrain, grow, control, finetune): :class:`TrainTensorBoard`, a Ray Train
  ``UserCallback``. The Train controller calls it after every ``ray.train.report`` (the loop reports every
  train record and every evaluation) with each worker's metrics; rank 0's are written (the loss is already
  averaged over ranks, validation losses over all of them). Event files: ``<run>/<stage>/tensorboard/``.
- Sweep trials: :class:`phiray.tune.tracking.TrialTensorBoard`, a Ray Tune ``TBXLoggerCallback`` (so Tune
  adds no default one) with the same tags and the trial's optimizer step as the x axis (Tune's default logs
  every result key under ``ray/tune/`` against the report count), plus the trial's point as TensorBoard
  hparams at its end.
  Tune writes the trial directory (``<run>/sweep/tune/<trial_id>/``) on the driver and syncs it to the run
  dir's file system itself.

Tags: ``train/{loss,lr,grad_norm,tokens_per_s,mfu}``, ``eval/val_loss``, ``eval/val_loss/<source>``,
``eval/pass_at_1`` (``pass@1``: TensorBoard tags allow no ``@``), ``data/sequences/<source>``.

Restarts: the first event of a writer, and any step that goes back, is preceded by a ``SessionLog START``
at that step. TensorBoard's reader then drops what an earlier attempt logged from that step on (the steps
a restarted worker group re-runs from the last checkpoint), so each step shows once, as in the history.

A run dir that is not a local disk (``s3://...``) gets the phase's files written to a local directory and
uploaded whole, at most every ``train.tracking.flush_secs`` and when the phase ends or a worker fails.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import posixpath
import shutil
import tempfile
import time
from typing import Any

import pyarrow.fs as pafs
from ray.train import UserCallback

from phiray.config import TrackingConfig
from phiray.rundir import FsPath, RunDir
from phiray.train.spec import TrainSpec

log = logging.getLogger("phiray")

TRAIN_KEYS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")


def scalar_tags(metrics: dict[str, Any]) -> dict[str, float]:
    """TensorBoard tag -> value for the phiray metrics of one report (Ray's bookkeeping keys are left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        if key in TRAIN_KEYS:
            out[f"train/{key}"] = float(value)
        elif key.startswith(("val_loss", "pass@")):
            out[f"eval/{key.replace('@', '_at_')}"] = float(value)
        elif key.startswith("sequences/"):
            out[f"data/{key}"] = float(value)
    return out


class EventLog:
    """One TensorBoard writer in ``logdir`` (a local directory); with ``upload``, the directory's files are
    copied there (any ``pyarrow.fs``) at most every ``flush_secs`` and on :meth:`close`."""

    def __init__(self, logdir: str, upload: FsPath | None = None, flush_secs: float = 30.0):
        from tensorboardX import SummaryWriter

        os.makedirs(logdir, exist_ok=True)
        self.logdir, self.upload, self.flush_secs = logdir, upload, flush_secs
        # tensorboardX names files by the second: the nanosecond suffix keeps two writers of one second apart,
        # and in the order they started (TensorBoard reads a directory's files sorted by name).
        self.writer = SummaryWriter(logdir, flush_secs=flush_secs, filename_suffix=f".{time.time_ns()}")
        self.last_step: int | None = None
        self._uploaded_at = time.monotonic()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        if self.last_step is None or step <= self.last_step:
            self.writer.file_writer.add_event(Event(session_log=SessionLog(status=SessionLog.START)), step=step)
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.last_step = step

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, global_step=0)

    def hparams(self, params: dict[str, Any], metrics: dict[str, float]) -> None:
        """TensorBoard's HParams entry (the dashboard that compares sweep trials)."""
        from tensorboardX.summary import hparams

        for summary in hparams(params, metrics):
            self.writer.file_writer.add_summary(summary)

    def flush(self, force: bool = False) -> None:
        self.writer.flush()
        if self.upload is not None and (force or time.monotonic() - self._uploaded_at >= self.flush_secs):
            self.upload.fs.create_dir(self.upload.path, recursive=True)
            pafs.copy_files(
                self.logdir,
                self.upload.path,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=self.upload.fs,
            )
            self._uploaded_at = time.monotonic()

    def close(self) -> None:
        self.writer.close()
        self.flush(force=True)
        if self.upload is not None:
            shutil.rmtree(self.logdir, ignore_errors=True)


def event_log_at(location: FsPath, flush_secs: float) -> EventLog:
    """An :class:`EventLog` writing into ``location`` in place (local disk) or through a staging directory."""
    if isinstance(location.fs, pafs.LocalFileSystem):
        return EventLog(location.path, flush_secs=flush_secs)
    return EventLog(tempfile.mkdtemp(prefix="phiray-tensorboard-"), upload=location, flush_secs=flush_secs)


class MlflowRun:
    """One MLflow run through ``MlflowClient`` (an explicit tracking URI: no process-global state)."""

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, params: dict[str, Any]):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:500])

    def scalars(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for tag, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


def mlflow_uri(tracking: TrackingConfig, rd: RunDir) -> str | None:
    """The MLflow tracking URI to log to, or None (switched off, not installed, or nowhere to write)."""
    if not tracking.mlflow:
        return None
    if importlib.util.find_spec("mlflow") is None:
        log.warning("train.tracking.mlflow is set but mlflow is not installed: logging to TensorBoard only")
        return None
    if tracking.mlflow_tracking_uri:
        return tracking.mlflow_tracking_uri
    if not rd.is_local:
        log.warning(
            "train.tracking.mlflow: the run dir %s is not a local disk; set train.tracking."
            "mlflow_tracking_uri (an MLflow server or store) to log there: MLflow is skipped",
            rd.location,
        )
        return None
    # MLflow 3 refuses its file store unless told to (maintenance mode): a SQLite store in the run dir instead.
    rd.fs.create_dir(rd.path("mlflow"), recursive=True)
    return f"sqlite:///{rd.path('mlflow')}/mlflow.db"


def mlflow_experiment(rd: RunDir, suffix: str = "") -> str:
    """The MLflow experiment of a run: ``phiray-<run dir name>`` (+ ``-sweep`` for its trials)."""
    return f"phiray-{posixpath.basename(rd.root.rstrip('/'))}{suffix}"


def spec_summary(spec: TrainSpec) -> str:
    """The phase's settings as a Markdown code block (TensorBoard's Text tab)."""
    facts = {
        k: v
        for k, v in spec.plain().items()
        if k in ("stage", "seed", "init_from", "mixture", "seq_len", "model", "phase", "train")
    }
    return "```\n" + json.dumps(facts, indent=2, sort_keys=True) + "\n```"


class TrainTensorBoard(UserCallback):
    """Ray Train callback (runs in the Train controller): every report of a phase into its event files."""

    def __init__(
        self,
        location: FsPath | None,
        flush_secs: float,
        max_steps: int,
        summary: str,
        mlflow: tuple[str, str, str, dict[str, Any]] | None = None,
    ):
        self.location, self.flush_secs, self.max_steps, self.summary = location, flush_secs, max_steps, summary
        self.mlflow = mlflow  # (tracking URI, experiment, run name, params)
        self._sinks: list[Any] | None = None
        self._broken = False

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sinks": None}  # open writers stay in the process that opened them

    def _open(self) -> list[Any]:
        if self._sinks is None:
            self._sinks = []
            if self.location is not None:
                events = event_log_at(self.location, self.flush_secs)
                events.text("phiray/spec", self.summary)
                self._sinks.append(events)
            if self.mlflow is not None:
                self._sinks.append(MlflowRun(*self.mlflow))
        return self._sinks

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        first = metrics[0] if metrics else {}
        if first.get("step") is None or self._broken:
            return
        step, done = int(first["step"]), int(first["step"]) >= self.max_steps
        try:
            for sink in self._open():
                sink.scalars(step, scalar_tags(first))
                if isinstance(sink, EventLog):
                    sink.flush(force=done)
            if done:
                self._close(failed=False)
        except Exception as err:  # noqa: BLE001 - tracking must never fail a training run
            self._broken = True
            log.warning(
                "tracking: writing %s's metrics failed (%s: %s); training continues without tracking",
                self.location.path if self.location else "the phase",
                type(err).__name__,
                err,
            )

    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
        # The worker group restarts from the last checkpoint (or the phase fails): save what is logged now.
        try:
            for sink in self._sinks or []:
                if isinstance(sink, EventLog):
                    sink.flush(force=True)
        except Exception as err:  # noqa: BLE001 - tracking must never fail a training run
            log.warning("tracking: saving event files failed (%s: %s)", type(err).__name__, err)

    def _close(self, failed: bool) -> None:
        for sink in self._sinks or []:
            if isinstance(sink, MlflowRun):
                sink.close(failed=failed)
            else:
                sink.close()
        self._sinks = None


def train_callbacks(spec: TrainSpec) -> list[UserCallback]:
    """The Ray Train callbacks of one phase (none when tracking is switched off)."""
    tracking, rd = spec.train.tracking, spec.rundir()
    uri = mlflow_uri(tracking, rd)
    if not tracking.tensorboard and uri is None:
        return []
    location = rd.fs_path(spec.tensorboard_dir) if tracking.tensorboard else None
    params = {
        "stage": spec.stage,
        "seed": spec.seed,
        "init_from": spec.init_from,
        **{f"mixture/{k}": v for k, v in spec.mixture.items()},
        **{f"phase/{k}": v for k, v in spec.phase.model_dump(mode="json").items() if not isinstance(v, dict)},
    }
    mlflow = (uri, mlflow_experiment(rd), spec.stage, params) if uri else None
    return [TrainTensorBoard(location, tracking.flush_secs, spec.phase.max_steps, spec_summary(spec), mlflow)]
