"""grow: phi-1's weight reuse. Load ``pretrain/model``, grow it into ``grow.target`` (layer map + width/head
tiling, :mod:`phiray.model.growth`), save it as ``grow/init/``, measure the validation loss at step 0 of
the grown model beside the small model's and a fresh initialisation's, then continue pretraining it
(``grow`` phase settings, pretrain's mixture unless ``grow.mixture`` is set). Final model: ``grow/model/``.
The phase itself is :func:`phiray.train.grow.grow_phase` (the thesis stage grows each seed's model with it).
"""

from __future__ import annotations

from phiray.config import RunConfig
from phiray.rundir import Manifest, RunDir
from phiray.train.grow import grow_phase


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Grow pretrain/model into ``grow.target`` by weight reuse, compare step-0 losses, continue pretraining."""
    return grow_phase(cfg, rd)
