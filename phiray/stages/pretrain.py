"""pretrain: train ``model`` on the ``pretrain.mixture`` of token sources (phi-1: CodeTextbook = filtered
code + synthetic textbooks) with DeepSpeed on Ray Train. Final model at ``pretrain/model/`` (HF format)."""

from __future__ import annotations

from phiray.config import RunConfig
from phiray.rundir import Manifest, RunDir
from phiray.train.driver import fit_phase, phase_manifest


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Pretrain ``model`` on the ``pretrain.mixture`` of token sources with DeepSpeed on Ray Train."""
    rd.remove("pretrain", "model")
    return phase_manifest("pretrain", fit_phase(cfg, rd, "pretrain"))
