"""The data contract on a run directory a test built: what each stage wrote against what the stage table declares.

Used by the default-tier tests whose fixtures already run stages: each checks the stages its fixture ran (no stage
is run for the check alone)."""

from __future__ import annotations

from collections.abc import Iterable

from phiray.pipeline import contract_problems as stage_problems
from phiray.rundir import MANIFEST, RunDir
from phiray.stages import STAGE_BY_NAME


def contract_problems(rd: RunDir, stages: Iterable[str]) -> list[str]:
    """How the outputs of ``stages`` in ``rd`` differ from their declarations (nothing when they match): the
    runner's check (``phiray.pipeline.contract_problems``) over every Parquet file, not one per output, and a stage
    with nothing under its directory is a problem too: the check would pass on it without looking at anything."""
    problems = []
    for name in stages:
        if not set(rd.listdir(name)) - {MANIFEST}:
            problems.append(f"{name}: nothing written under {name}/")
        problems += stage_problems(STAGE_BY_NAME[name], rd)
    return problems
