"""A local phiray Ray cluster during a real Ray Train fit: every listener on loopback, and no Ray warning
repeated in what the run's log would show (issue 29). One short fit (2 workers) serves both checks.

The listeners are sampled from /proc while the fit runs (torch's rendezvous store exists only then), over
every process this test session started: Ray's GCS, raylet, agents, workers, the train workers."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from listeners import ListenerSampler
from ray_log_checks import log_offsets, repeated_ray_warnings, worker_log_text
from train_fixtures import small_config, tokenized_run

from phiray.rundir import RunDir


class _RayRecords(logging.Handler):
    """The driver's own Ray log records, in Ray's format (what `phiray run` prints on its stderr)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(filename)s:%(lineno)d -- %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def short_fit(ray_session, tmp_path_factory):
    """pretrain.run on the tiny fixture corpus: 2 Ray Train workers (DDP on gloo), 2 steps."""
    from ray._private.worker import _global_node

    from phiray.stages import pretrain

    # A copy of the shared tokenized fixture: this fit's checkpoints must not land beside those that
    # test_train_loop counts in the shared run directory.
    shared = tokenized_run(tmp_path_factory.getbasetemp())
    rd = RunDir(shutil.copytree(shared.root, tmp_path_factory.mktemp("hygiene") / "run"))
    cfg = small_config(
        "pretrain.max_steps=2",
        "pretrain.eval_every=2",
        "pretrain.log_every=1",
        "pretrain.checkpoint_every=2",
        "train.num_workers=2",
        "train.strategy=ddp",
        "train.cpus_per_worker=0.5",
    )
    logs = Path(_global_node.get_logs_dir_path())
    offsets, records, sampler = log_offsets(logs), _RayRecords(), ListenerSampler(os.getpid())
    logging.getLogger("ray").addHandler(records)
    sampler.start()
    try:
        manifest = pretrain.run(cfg, rd)
    finally:
        seen = sampler.stop()
        logging.getLogger("ray").removeHandler(records)
    return manifest, seen, worker_log_text(logs, offsets) + "\n" + "\n".join(records.lines)


def test_every_listener_of_a_local_run_is_on_loopback(short_fit):
    manifest, seen, _ = short_fit
    assert manifest.metrics["world_size"] == 2
    commands = " ".join(listener.process for listener in seen)
    # The sample covered what matters: Ray's own servers and the fit's rendezvous store (rank 0).
    assert "gcs_server" in commands and "raylet" in commands and "RayTrainWorker" in commands, commands
    assert [str(listener) for listener in seen if not listener.loopback] == []


def test_a_fit_repeats_no_ray_warning(short_fit):
    _, _, log = short_fit
    assert len(log.splitlines()) > 10  # the fit's workers and controller wrote to their logs
    assert repeated_ray_warnings(log) == {}
    # Ray Train's PlacementGroupCleaner polls the State API once a second and, without a dashboard, warns
    # on each poll in a bare line the check above cannot parse: phiray's trainer must not start it here
    # (phiray/train/trainer.py). Its worker log names it on its first line.
    assert ":actor_name:PlacementGroupCleaner" not in log
    assert "Failed to query Ray Train Controller" not in log
