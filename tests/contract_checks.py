"""The data contract on a run directory a test built: what each stage wrote against what the stage table declares.

Used by the default-tier tests whose fixtures already run stages: each checks the stages its fixture ran (no stage
is run for the check alone)."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from phiray.pipeline import output_mismatches
from phiray.rundir import MANIFEST, RunDir
from phiray.stages import STAGE_BY_NAME


def contract_problems(rd: RunDir, stages: Iterable[str]) -> list[str]:
    """How the outputs of ``stages`` in ``rd`` differ from their declarations (nothing when they match): each
    Parquet output has its schema in ``phiray.schemas.SCHEMAS`` (``output_mismatches``), and every entry under
    ``<stage>/`` is one of the stage's ``writes`` (schemas or ``ARTIFACTS``; a write may be a glob). A stage with
    nothing under its directory is a problem too: the check would pass on it without looking at anything."""
    problems = []
    for name in stages:
        stage = STAGE_BY_NAME[name]
        entries = set(rd.listdir(name)) - {MANIFEST}
        if not entries:
            problems.append(f"{name}: nothing written under {name}/")
        undeclared = [e for e in sorted(entries) if not any(fnmatchcase(e, w) for w in stage.writes)]
        problems += [f"{name}/{e}: not one of {name}'s writes {stage.writes}" for e in undeclared]
        problems += output_mismatches(stage, rd)
    return problems
