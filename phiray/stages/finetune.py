"""finetune: continue from the grown model (or the pretrained one when the run has no ``grow``) on the
exercises, as prompt -> completion with the loss on the completion tokens only (``exercises_sft``).
phi-1's defaults: batch 256, lr 1e-4, 50 warmup steps, weight decay 0.01, 6000 steps."""

from __future__ import annotations

from phiray.config import RunConfig
from phiray.rundir import Manifest, RunDir
from phiray.train.driver import fit_phase, phase_manifest


def base_model(rd: RunDir) -> str:
    """The model finetuning starts from: grow's when that stage ran, else pretrain's."""
    for stage in ("grow", "pretrain"):
        if rd.read_manifest(stage) is not None and rd.exists(stage, "model", "config.json"):
            return f"{stage}/model"
    raise RuntimeError("finetune needs a trained model: run pretrain (and optionally grow) first")


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Finetune the grown (or pretrained) model on the exercises, the loss on the completion only."""
    init_from = base_model(rd)
    rd.remove("finetune", "model")
    return phase_manifest(
        "finetune", fit_phase(cfg, rd, "finetune", init_from=init_from), extra_metrics={"init_from": init_from}
    )
