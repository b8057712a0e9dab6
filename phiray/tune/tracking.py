"""Experiment tracking of sweep trials through Ray Tune's logger hook (see :mod:`phiray.train.tracking` for the
tags, the restart rule and MLflow): each trial's reports into event files in its Tune trial directory."""

from __future__ import annotations

import json
import logging
from typing import Any

from ray.tune.logger import TBXLoggerCallback

from phiray.config import TrackingConfig
from phiray.rundir import RunDir
from phiray.train.tracking import EventLog, mlflow_experiment, mlflow_uri, scalar_tags

log = logging.getLogger("phiray")


def point_hparams(point: dict[str, Any]) -> dict[str, Any]:
    """A sweep point as TensorBoard hparams (scalars and strings; unset dimensions left out)."""
    params: dict[str, Any] = {"point_id": point.get("id", "")}
    params.update({f"w/{name}": float(weight) for name, weight in (point.get("mixture") or {}).items()})
    for key in ("lr", "passes"):
        if point.get(key) is not None:
            params[key] = float(point[key])
    for path, value in (point.get("extra") or {}).items():
        params[f"x/{path}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return params


class TrialTensorBoard(TBXLoggerCallback):
    """Ray Tune logger callback: each trial's reports into event files in its trial directory.

    A ``TBXLoggerCallback`` so that Tune does not add its default one as well; ``enabled=False`` writes
    nothing at all (``train.tracking.tensorboard=false``)."""

    def __init__(self, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        self._logs: dict[Any, EventLog] = {}
        self._last: dict[Any, dict[str, float]] = {}

    def log_trial_start(self, trial) -> None:
        if not self.enabled:
            return
        if trial in self._logs:
            self._logs.pop(trial).close()
        trial.init_local_path()
        self._logs[trial] = EventLog(trial.local_path)  # Tune syncs the trial's directory to the run dir
        self._last[trial] = {}

    def log_trial_result(self, iteration: int, trial, result: dict[str, Any]) -> None:
        if not self.enabled or result.get("step") is None:
            return
        try:
            if trial not in self._logs:
                self.log_trial_start(trial)
            values = scalar_tags(result)
            self._logs[trial].scalars(int(result["step"]), values)
            self._logs[trial].flush()
            self._last[trial] = values
        except Exception as err:  # noqa: BLE001 - tracking must never fail a sweep
            self.enabled = False
            log.warning(
                "tracking: writing trial %s's events failed (%s: %s); the sweep continues without them",
                trial,
                type(err).__name__,
                err,
            )

    def log_trial_end(self, trial, failed: bool = False) -> None:
        if trial not in self._logs:
            return
        events, last = self._logs.pop(trial), self._last.pop(trial, {})
        point = (trial.config or {}).get("point") or {}
        if point and last:
            events.hparams(point_hparams(point), last)
        events.close()


def tune_callbacks(tracking: TrackingConfig, rd: RunDir) -> list[Any]:
    """The Ray Tune callbacks of a sweep: phiray's TensorBoard logger, and Ray's MLflow logger when asked for."""
    callbacks: list[Any] = [TrialTensorBoard(enabled=tracking.tensorboard)]
    uri = mlflow_uri(tracking, rd)
    if uri is not None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(
            MLflowLoggerCallback(tracking_uri=uri, experiment_name=mlflow_experiment(rd, "-sweep"), save_artifact=False)
        )
    return callbacks
