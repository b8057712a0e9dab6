"""control: the same model, loop and budget as ``pretrain`` (its own ``control`` phase settings), trained on
the ``unfiltered`` corpus only (decontaminate/documents): the baseline that shows what filtering and
synthetic textbooks buy. Final model at ``control/model/``."""

from __future__ import annotations

from phiray.config import RunConfig
from phiray.rundir import Manifest, RunDir
from phiray.train.driver import fit_phase, phase_manifest


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Train the control model (``control`` phase) on the unfiltered corpus only: control/model."""
    if not cfg.control.enabled:
        return Manifest(stage="control", headline={"skipped": "control.enabled=false"})
    rd.remove("control", "model")
    return phase_manifest("control", fit_phase(cfg, rd, "control"))
