"""Every model directory phiray writes loads in vLLM as it is, and vLLM's greedy output equals transformers'
``generate`` on it (issue 15). Fast tier: one engine start on a directory ``save_model`` writes with the tiny
preset's geometry; slow tier: a training checkpoint's ``hf/``, ``grow/init`` and the final models of a real
tiny pretrain, grow, finetune and control."""

from __future__ import annotations

import glob

import pytest
from model_dir_checks import assert_self_contained
from train_fixtures import make_fake_run, small_config
from vllm_fixtures import assert_vllm_equals_transformers, tiny_hf_checkpoint

from phiray.model.tokenizer import load_tokenizer


def test_vllm_greedy_equals_transformers_on_a_saved_tiny_model(tmp_path):
    out = tiny_hf_checkpoint(tmp_path)  # save_model, the tiny preset's heads of 64 with rotary 32
    assert_self_contained(out, load_tokenizer(tmp_path / "tokenizer"))
    assert_vllm_equals_transformers([out])


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_vllm_greedy_equals_transformers_on_every_model_dir_of_a_tiny_run(ray_session, tmp_path):
    from phiray.pipeline import run_pipeline
    from phiray.stages import STAGES

    rd = make_fake_run(tmp_path / "run")
    cfg = small_config(
        "run.stages=[tokenize, pretrain, grow, finetune, control]",
        "train.num_workers=2",
        "pretrain.max_steps=20",
        "pretrain.checkpoint_every=10",
        "pretrain.eval_every=10",
        *(
            f"{phase}.{key}=4"
            for phase in ("grow", "finetune", "control")
            for key in ("max_steps", "checkpoint_every", "eval_every")
        ),
    )
    assert [s.state for s in run_pipeline(STAGES, cfg, rd)] == ["done"] * 5
    checkpoint_hf = sorted(glob.glob(rd.path("pretrain/checkpoints/*/checkpoint_*/hf")))
    dirs = [checkpoint_hf[-1], rd.path("pretrain/model"), rd.path("grow/init")]
    dirs += [rd.path(stage, "model") for stage in ("grow", "finetune", "control")]
    tokenizer = load_tokenizer(rd.path("tokenize/tokenizer"))
    for directory in dirs:
        assert_self_contained(directory, tokenizer)
    assert_vllm_equals_transformers(dirs)
