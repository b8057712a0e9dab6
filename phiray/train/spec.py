"""The typed object a training worker (Ray Train) or a sweep trial (Ray Tune) receives: :class:`TrainSpec`.

The driver builds it once (:func:`phiray.train.driver.build_spec`), fully resolved (mixture weights over the
sources that exist, paths of the packed shards, sequence length, the tokenizer's EOS), and ships it across
the Ray boundary as it is: a misspelt field fails on the driver, not in a worker minutes later.
"""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from phiray.config import ModelConfig, PhaseConfig, TrainConfig
from phiray.rundir import RunDir

TENSORBOARD_DIR = "tensorboard"
"""A phase's event files: ``<run>/<stage>/tensorboard/`` (a sweep's trials: ``<run>/sweep/tune/<trial_id>/``)."""


class TrainSpec(BaseModel):
    """Everything one training phase needs, resolved by the driver."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, protected_namespaces=())

    stage: str = Field(description="Stage the phase belongs to (pretrain, grow, finetune, control, sweep, ...).")
    run_root: str = Field(description="Run directory root on ``fs``.")
    fs: pafs.FileSystem = Field(exclude=True, description="The run directory's file system (picklable).")
    seed: int = Field(description="run.seed: initialisation and the data order.")
    model: ModelConfig = Field(description="Architecture of a fresh model (unused when init_from is set).")
    init_from: str | None = Field(None, description="Run-relative HF model directory to start from.")
    eos_token_id: int | None = Field(None, description="The tokenizer's EOS id, written into a fresh model's config.")
    # SerializeAsAny: the phase is a PretrainConfig / GrowConfig / ...; dumps keep the subclass's own fields.
    phase: SerializeAsAny[PhaseConfig] = Field(description="The phase's section (batch, lr, steps, cadences).")
    train: TrainConfig = Field(description="The train section (strategy, workers, precision, tracking).")
    train_sources: dict[str, str] = Field(description="Source name -> run-relative packed train shards.")
    val_sources: dict[str, str] = Field(description="Source name -> run-relative packed validation shards.")
    mixture: dict[str, float] = Field(description="Normalised weights over train_sources.")
    missing_sources: list[str] = Field(default_factory=list, description="Mixture sources not found (skipped).")
    seq_len: int = Field(description="Tokens per packed sequence.")
    tokenizer_dir: str = Field(description="Run-relative tokenizer directory (copied into every model dir).")
    output_dir: str | None = Field(description="Run-relative final model directory (None: no final model).")
    workers_dir: str | None = Field(description="Run-relative directory of per-rank pid records (None: none).")

    def rundir(self) -> RunDir:
        return RunDir(self.run_root, filesystem=self.fs)

    def plain(self) -> dict[str, Any]:
        """The spec as JSON data without the file system (hashing, model cards, logs)."""
        return self.model_dump(mode="json")

    @property
    def tensorboard_dir(self) -> str:
        """Run-relative directory of the phase's TensorBoard event files."""
        return f"{self.stage}/{TENSORBOARD_DIR}"
