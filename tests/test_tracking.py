"""Experiment tracking and the typed training spec.

Event files are read back with TensorBoard's own reader (``EventAccumulator``). The real Ray Train phase
and the real Tune sweep that write them are the fits of test_train_loop.py and test_sweep.py (their event
files are checked there, so the default tier pays for each fit once)."""

from __future__ import annotations

import logging
import pickle

import pytest
from contract_checks import contract_problems
from pydantic import ValidationError
from tracking_checks import read_scalars
from train_fixtures import small_config, tokenized_run

from phiray.config import TrackingConfig
from phiray.report.render import render_html, render_markdown
from phiray.report.tracking import tensorboard_command, tracked_dirs, tracking
from phiray.rundir import FsPath, RunDir
from phiray.train.driver import build_spec, spec_hash
from phiray.train.spec import TrainSpec
from phiray.train.tracking import EventLog, event_log_at, mlflow_uri, scalar_tags, train_callbacks
from phiray.tune.tracking import point_hparams


def test_metric_keys_become_grouped_tags():
    tags = scalar_tags(
        {
            "step": 4,
            "loss": 2.5,
            "lr": 1e-3,
            "grad_norm": 0.7,
            "tokens_per_s": 900.0,
            "mfu": 0.01,
            "val_loss": 3.0,
            "val_loss/code": 2.9,
            "pass@1": 0.5,
            "sequences/code": 12,
            "point_id": "p001",
            "training_iteration": 3,
            "done": False,
            "time_total_s": 1.0,
            "nan": float("nan"),
        }
    )
    assert tags == {
        "train/loss": 2.5,
        "train/lr": 1e-3,
        "train/grad_norm": 0.7,
        "train/tokens_per_s": 900.0,
        "train/mfu": 0.01,
        "eval/val_loss": 3.0,
        "eval/val_loss/code": 2.9,
        "eval/pass_at_1": 0.5,
        "data/sequences/code": 12.0,
    }
    point = {
        "id": "p003",
        "mixture": {"code": 0.25, "textbooks": 0.75},
        "passes": None,
        "lr": 3e-3,
        "extra": {"pretrain.weight_decay": 0.1, "model.betas": [0.9, 0.95]},
    }
    assert point_hparams(point) == {
        "point_id": "p003",
        "w/code": 0.25,
        "w/textbooks": 0.75,
        "lr": 3e-3,
        "x/pretrain.weight_decay": 0.1,
        "x/model.betas": "[0.9, 0.95]",
    }


def test_a_restart_replaces_the_steps_it_re_runs(tmp_path):
    """A worker group restarted from the step-3 checkpoint logs steps 4.. again: TensorBoard shows each step once,
    with the values of the execution that counts (the later one), whether the restart opened a new writer (a new
    controller) or went back within one."""
    first = EventLog(str(tmp_path))
    for step in range(1, 7):
        first.scalars(step, {"train/loss": 10.0 - step})
    first.close()
    second = EventLog(str(tmp_path))
    for step in range(4, 9):
        second.scalars(step, {"train/loss": 100.0 + step})
    for step in (7, 8):  # within one writer: the step goes back
        second.scalars(step, {"train/loss": 200.0 + step})
    second.close()
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    points = read_scalars(tmp_path)["train/loss"]
    assert [s for s, _ in points] == list(range(1, 9))
    assert [v for _, v in points] == [9.0, 8.0, 7.0, 104.0, 105.0, 106.0, 207.0, 208.0]


def test_train_callback_writes_rank_0s_reports_and_survives_restarts(tmp_path, caplog):
    """The Ray Train callback as the controller drives it: each report's per-rank metrics (rank 0's written),
    a worker failure (files saved), the re-run steps after the restart (each shown once), the last step (closed)."""
    from phiray.train.tracking import TrainTensorBoard

    callback = TrainTensorBoard(
        FsPath(RunDir(tmp_path).fs, str(tmp_path / "tb")), flush_secs=3600, max_steps=4, summary="settings"
    )

    def report(step: int, loss: float) -> None:
        callback.after_report(None, [{"step": step, "loss": loss}, {"step": step, "loss": -1.0}], None)

    callback.after_report(None, [{"step": 0, "val_loss": 5.0}] * 2, None)
    report(1, 4.0)
    report(2, 3.0)
    callback.after_exception(None, {1: RuntimeError("worker died")})
    report(2, 3.5)  # resumed from the step-1 checkpoint
    report(3, 2.5)
    report(4, 2.0)
    assert callback._sinks is None  # closed at max_steps
    scalars = read_scalars(tmp_path / "tb")
    assert scalars["train/loss"] == [(1, 4.0), (2, 3.5), (3, 2.5), (4, 2.0)] and scalars["eval/val_loss"] == [(0, 5.0)]
    broken = TrainTensorBoard(FsPath(RunDir(tmp_path).fs, "/proc/phiray-cannot-write"), 3600, 4, "settings")
    with caplog.at_level(logging.WARNING, logger="phiray"):
        broken.after_report(None, [{"step": 1, "loss": 1.0}], None)  # tracking never fails training
        broken.after_report(None, [{"step": 2, "loss": 1.0}], None)
    assert caplog.text.count("training continues without tracking") == 1


def test_event_files_reach_an_object_store_run_dir(s3_server, tmp_path):
    """On s3:// the files are staged locally and uploaded whole: not before flush_secs, always on close."""
    bucket = s3_server.new_bucket()
    rd = RunDir(f"{bucket}/run")
    events = event_log_at(rd.fs_path("pretrain/tensorboard"), flush_secs=3600)
    for step in (0, 2, 4):
        events.scalars(step, {"eval/val_loss": 5.0 - step})
    events.flush()
    assert not rd.exists("pretrain/tensorboard")  # throttled: nothing uploaded yet
    events.close()
    names = rd.listdir("pretrain/tensorboard")
    assert len(names) == 1 and names[0].startswith("events.out.tfevents.")
    (tmp_path / names[0]).write_bytes(rd.read_bytes(f"pretrain/tensorboard/{names[0]}"))
    assert read_scalars(tmp_path)["eval/val_loss"] == [(0, 5.0), (2, 3.0), (4, 1.0)]
    assert [row[:3] for row in tracked_dirs(rd)] == [("pretrain", "pretrain/tensorboard", 1)]
    assert tensorboard_command(rd) == f"tensorboard --logdir {bucket}/run"


def test_report_section_links_every_phase_and_trial(tmp_path):
    rd = RunDir(tmp_path / "run")
    for directory in ("pretrain/tensorboard", "finetune/tensorboard", "sweep/tune/t1", "sweep/tune/t2"):
        events = EventLog(rd.path(directory))
        events.scalars(0, {"eval/val_loss": 1.0})
        events.close()
    rd.write_text("sweep/tune/t1/result.json", "{}")
    assert [row[:3] for row in tracked_dirs(rd)] == [
        ("pretrain", "pretrain/tensorboard", 1),
        ("finetune", "finetune/tensorboard", 1),
        ("sweep (2 trials)", "sweep/tune", 2),
    ]
    section = tracking(rd)
    page, markdown = render_html("r", [section]), render_markdown("r", [section])
    assert "<a href='../pretrain/tensorboard/'>" in page and "<a href='../sweep/tune/'>" in page
    assert "[finetune: finetune/tensorboard/](../finetune/tensorboard/)" in markdown
    assert f"tensorboard --logdir {rd.root}" in page and f"tensorboard --logdir {rd.root}" in markdown
    empty = tracking(RunDir(tmp_path / "empty"))
    assert "No TensorBoard event files" in empty.blocks[0][1] and tensorboard_command(RunDir(tmp_path / "x")) is None


def test_mlflow_is_skipped_cleanly_when_not_installed(tmp_path, caplog, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real_find_spec(name, *a)
    )
    rd = RunDir(tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="phiray"):
        assert mlflow_uri(TrackingConfig(mlflow=True), rd) is None
    assert "mlflow is not installed" in caplog.text
    assert mlflow_uri(TrackingConfig(), rd) is None  # off by default: no warning needed


def test_mlflow_run_logs_to_a_sqlite_store_in_the_run_dir(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from phiray.train.tracking import MlflowRun

    rd = RunDir(tmp_path / "run")
    uri = mlflow_uri(TrackingConfig(mlflow=True), rd)
    assert uri == f"sqlite:///{rd.path('mlflow')}/mlflow.db"
    run = MlflowRun(uri, "phiray-test", "pretrain", {"stage": "pretrain", "phase/lr": 0.001})
    for step in (1, 2):
        run.scalars(step, {"train/loss": 3.0 - step, "eval/pass_at_1": 0.5})
    run.close()
    history = MlflowClient(tracking_uri=uri).get_metric_history(run.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.0)]


# ----------------------------------------------------------------------------- the typed spec


@pytest.fixture(scope="module")
def tokenized(ray_session, tmp_path_factory):
    return tokenized_run(tmp_path_factory.getbasetemp())


def test_the_spec_is_a_frozen_typed_model(tokenized):
    cfg = small_config("pretrain.max_steps=7")
    spec = build_spec(cfg, tokenized, "pretrain")
    assert isinstance(spec, TrainSpec) and spec.phase.max_steps == 7 and spec.model == cfg.model
    assert spec.model is not cfg.model  # a copy: the run's config cannot change a spec already built
    with pytest.raises(ValidationError):
        spec.seed = 3
    with pytest.raises(ValidationError, match="bogus"):  # a misspelt field fails where the spec is built
        TrainSpec(**spec.model_dump(), fs=spec.fs, bogus=1)
    again = pickle.loads(pickle.dumps(spec))  # what crosses the Ray boundary
    assert again == spec and type(again.fs) is type(spec.fs) and "fs" not in spec.plain()
    grow = build_spec(
        cfg,
        tokenized,
        "grow",
        init_from="pretrain/model",
        model_cfg=cfg.grow.target,
        mixture=dict(cfg.pretrain.mixture),
    )
    assert grow.plain()["phase"]["target"] == cfg.grow.target.model_dump(mode="json")  # the subclass's fields
    assert spec.tensorboard_dir == "pretrain/tensorboard"


def test_the_run_identity_ignores_tracking_settings(tokenized):
    base = build_spec(small_config(), tokenized, "pretrain")
    quiet = build_spec(
        small_config("train.tracking.tensorboard=false", "train.tracking.flush_secs=1"), tokenized, "pretrain"
    )
    assert spec_hash(quiet) == spec_hash(base)  # an interrupted phase still resumes after a tracking change
    assert spec_hash(build_spec(small_config("pretrain.lr=0.5"), tokenized, "pretrain")) != spec_hash(base)
    assert train_callbacks(quiet) == []
    [callback] = train_callbacks(base)
    assert callback.location == FsPath(tokenized.fs, tokenized.path("pretrain/tensorboard"))
    assert pickle.loads(pickle.dumps(callback)).max_steps == base.phase.max_steps


def test_resume_from_restores_a_ray_checkpoint(tokenized, tmp_path):
    """The one restore helper the Train loop and the Tune trainable share: a Ray Checkpoint in, the engine and
    loop state back (a None checkpoint is a fresh start)."""
    import torch
    from ray.train import Checkpoint

    from phiray.train.loop import Trainer

    cfg = small_config(
        "pretrain.max_steps=4",
        "pretrain.eval_every=2",
        "pretrain.log_every=1",
        "pretrain.global_batch_size=4",
        "pretrain.micro_batch_size=4",
    )
    spec = build_spec(cfg, tokenized, "pretrain").model_copy(update={"output_dir": None})
    first = Trainer(spec, 0, 1, distributed=False)
    reports: list[dict] = []
    first.run(lambda metrics, _dir: reports.append(metrics), checkpoint_every=None)
    assert [r["step"] for r in reports] == [0, 1, 2, 3, 4]  # every train record and evaluation is reported
    assert "loss" in reports[1] and "val_loss" not in reports[1] and "val_loss" in reports[2]
    first.save(str(tmp_path))
    second = Trainer(spec, 0, 1, distributed=False)
    assert second.resume_from(None) is False and second.step == 0
    assert second.resume_from(Checkpoint.from_directory(str(tmp_path))) is True
    assert second.step == 4 and second.history["resumes"] == [4]
    assert second.history["train"] == first.history["train"]
    for (name, a), b in zip(first.engine.module.state_dict().items(), second.engine.module.state_dict().values()):
        assert torch.equal(a, b), name


def test_trial_context_is_typed():
    from phiray.config import SandboxConfig
    from phiray.tune.trainable import TrialContext

    context = TrialContext(
        specs={},
        threads=1,
        checkpoint=True,
        pass_every=0,
        objective="val_loss",
        sandbox=SandboxConfig(),
        max_new_tokens=8,
    )
    assert pickle.loads(pickle.dumps(context)) == context
    with pytest.raises(ValidationError, match="pass_evry"):
        TrialContext(
            specs={},
            threads=1,
            checkpoint=True,
            pass_evry=0,
            objective="val_loss",
            sandbox=SandboxConfig(),
            max_new_tokens=8,
        )
    with pytest.raises(ValidationError):
        context.threads = 4


def test_tune_callbacks_replace_tunes_default_tensorboard_logger(tmp_path):
    from ray.tune.logger import TBXLoggerCallback

    from phiray.tune.tracking import TrialTensorBoard, tune_callbacks

    [callback] = tune_callbacks(TrackingConfig(), RunDir(tmp_path))
    assert isinstance(callback, TrialTensorBoard) and isinstance(callback, TBXLoggerCallback) and callback.enabled
    assert not tune_callbacks(TrackingConfig(tensorboard=False), RunDir(tmp_path))[0].enabled


def test_grow_receives_the_typed_spec(tokenized, tmp_path):
    """grow's step-0 comparison (a Ray task in the stage) takes the TrainSpec and the target ModelConfig as they are."""
    import shutil

    from phiray.model.io import save_model
    from phiray.model.presets import build_model
    from phiray.train.grow import grow_and_compare

    rd = RunDir(tmp_path / "run")
    shutil.copytree(tokenized.path("tokenize"), rd.path("tokenize"))
    cfg = small_config("grow.eval_batches=1", "train.num_workers=1")
    save_model(build_model(cfg.model, seed=0), rd.path("pretrain/model"), tokenizer_dir=rd.path("tokenize/tokenizer"))
    spec = build_spec(
        cfg, rd, "grow", init_from="pretrain/model", model_cfg=cfg.grow.target, mixture=dict(cfg.pretrain.mixture)
    )
    growth = grow_and_compare(spec, cfg.grow.target, cfg.grow.scale_inputs)
    assert set(growth["step0"]) == {"small", "grown", "fresh"} and growth["step0"]["grown"]["val_loss"] > 0
    assert rd.exists("grow/init", "config.json") and growth["params"]["grown"] > growth["params"]["small"]
    assert not contract_problems(rd, ["grow"])  # grow's step-0 half: grow/init is a declared write
