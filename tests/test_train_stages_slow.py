"""Slow tier: the tiny recipe's training stages end to end, and a real worker kill mid-run."""

import glob
import os
import signal
import threading
import time

import pytest
import torch
from model_dir_checks import assert_self_contained
from tracking_checks import read_scalars
from train_fixtures import make_fake_run, small_config, tokenized_run
from transformers import AutoModelForCausalLM, AutoTokenizer

from phiray.model.tokenizer import load_tokenizer
from phiray.pipeline import run_pipeline
from phiray.stages import STAGES
from phiray.train.driver import fit_phase

# Generous limits: the machine is shared, and under load each Ray Train fit takes minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def test_tiny_pretrain_grow_finetune_control_end_to_end(ray_session, tmp_path):
    rd = make_fake_run(tmp_path / "run")
    cfg = small_config(
        "run.stages=[tokenize, pretrain, grow, finetune, control]",
        "train.num_workers=2",
        "pretrain.max_steps=40",
        "grow.max_steps=20",
        "finetune.max_steps=20",
        "control.max_steps=40",
    )
    states = run_pipeline(STAGES, cfg, rd)
    assert [s.state for s in states] == ["done"] * 5
    pre, grow, fine, control = (rd.read_manifest(s) for s in ("pretrain", "grow", "finetune", "control"))
    val = [v["val_loss"] for v in pre.metrics["curve"]["val"]]
    assert val[-1] < val[0] - 0.5 and pre.metrics["strategy"] == "deepspeed" and pre.metrics["world_size"] == 2
    step0 = grow.metrics["growth"]["step0"]
    assert set(step0) == {"small", "grown", "fresh"}
    assert step0["grown"]["val_loss"] < step0["fresh"]["val_loss"]  # weight reuse beats a fresh init at step 0
    assert grow.headline["step0_small"] == pytest.approx(step0["small"]["val_loss"])
    assert grow.metrics["curve"]["val"][0]["val_loss"] == pytest.approx(step0["grown"]["val_loss"], rel=1e-3)
    assert fine.metrics["init_from"] == "grow/model" and fine.metrics["mixture"] == {"exercises_sft": 1.0}
    assert fine.headline["val_loss_final"] < fine.headline["val_loss_start"]
    assert control.metrics["mixture"] == {"unfiltered": 1.0}
    for stage in ("pretrain", "grow", "finetune", "control"):
        model = AutoModelForCausalLM.from_pretrained(rd.path(stage, "model"))
        tok = AutoTokenizer.from_pretrained(rd.path(stage, "model"))
        assert model(input_ids=torch.tensor([tok("def f(x):")["input_ids"]])).logits.shape[-1] == 1024
    assert AutoModelForCausalLM.from_pretrained(rd.path("grow/model")).config.hidden_size == 256
    # Every model directory the stages wrote is self-contained (final, grow/init, each checkpoint's hf/).
    tokenizer = load_tokenizer(rd.path("tokenize/tokenizer"))
    checkpoint_hf = glob.glob(rd.path("*/checkpoints/*/checkpoint_*/hf"))
    assert {p.split(os.sep)[-5] for p in checkpoint_hf} == {"pretrain", "grow", "finetune", "control"}
    for directory in (
        [rd.path(s, "model") for s in ("pretrain", "grow", "finetune", "control")]
        + [rd.path("grow/init")]
        + checkpoint_hf
    ):
        assert_self_contained(directory, tokenizer)


def test_killed_worker_resumes_from_the_last_checkpoint(ray_session, tmp_path_factory):
    rd = tokenized_run(tmp_path_factory.getbasetemp())
    steps = 100  # with 4 micro-batches per step: long enough after the first checkpoint to kill mid-run
    cfg = small_config(
        f"pretrain.max_steps={steps}",
        "pretrain.checkpoint_every=10",
        "pretrain.eval_every=100",
        "pretrain.log_every=1",
        "pretrain.global_batch_size=64",
        "pretrain.micro_batch_size=8",
        "train.num_workers=2",
        "train.max_failures=2",
    )
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["info"] = fit_phase(cfg, rd, "pretrain", stage="killtest")
        except BaseException as err:  # noqa: BLE001 - surfaced by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=fit)
    thread.start()
    deadline = time.time() + 600
    pattern = rd.path("killtest/checkpoints/killtest-*/checkpoint_*")
    # Two checkpoint folders: the first is then committed (one still uploading is not resumable yet).
    while len(glob.glob(pattern)) < 2 and time.time() < deadline and thread.is_alive():
        time.sleep(0.2)
    assert glob.glob(pattern), "no checkpoint appeared"
    victim = rd.read_json("killtest/checkpoints/workers/rank-1.json")["pid"]
    os.kill(victim, signal.SIGKILL)  # a real kill of one training worker
    assert thread.is_alive(), "training finished before the kill: make the run longer"
    thread.join(timeout=900)
    assert "error" not in outcome, outcome.get("error")
    info = outcome["info"]
    history = info["history"]
    assert len(history["resumes"]) >= 1 and all(0 < s < steps for s in history["resumes"])
    assert [r["step"] for r in history["train"]] == list(range(1, steps + 1))  # each optimizer step recorded once
    # TensorBoard too: the restart's SessionLog START drops the re-run steps' first points.
    assert [s for s, _ in read_scalars(rd.path("killtest/tensorboard"))["train/loss"]] == list(range(1, steps + 1))
    assert info["engine_global_steps"] == steps and info["steps"] == steps
    assert rd.read_json("killtest/checkpoints/workers/rank-1.json")["pid"] != victim
