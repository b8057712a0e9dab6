"""phiray.schemas: one schema per stage output, for writing, empty outputs and upstream checks."""

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contract_checks import contract_problems

from phiray.config import load_config
from phiray.pipeline import output_mismatches, run_stage
from phiray.rundir import Manifest, RunDir
from phiray.schemas import ARTIFACTS, SCHEMAS, SYNTHESIZE_EXERCISES, require, write_empty
from phiray.stages import STAGE_BY_NAME, STAGES
from phiray.stages.synthesize import OUTPUT_COLUMNS, OUTPUTS


def test_every_schema_names_a_stage_output_once():
    for (stage, name), schema in SCHEMAS.items():
        assert stage in STAGE_BY_NAME, stage
        assert len(set(schema.names)) == len(schema.names), f"{stage}/{name} repeats a column"
    assert {name: tuple(SCHEMAS[("synthesize", name)].names) for name in OUTPUTS} == OUTPUT_COLUMNS


def test_an_empty_output_has_its_schema_and_passes_the_upstream_check(tmp_path):
    rd = RunDir(tmp_path / "run")
    write_empty(rd, "synthesize", "validation")
    table = pq.read_table(rd.path("synthesize", "validation"))
    assert table.num_rows == 0 and table.schema.equals(SYNTHESIZE_EXERCISES)
    require(rd, "synthesize", "validation")


def test_upstream_check_names_what_is_missing(tmp_path):
    rd = RunDir(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="synthesize/exercises has no Parquet files.*run stage 'synthesize'"):
        require(rd, "synthesize", "exercises")
    rd.makedirs("synthesize", "exercises")
    pq.write_table(pa.table({"id": ["a"], "prompt": ["p"]}), rd.path("synthesize", "exercises", "part-0.parquet"))
    require(rd, "synthesize", "exercises", columns=["id", "prompt"])
    with pytest.raises(ValueError, match="lacks column\\(s\\) solution, tests"):
        require(rd, "synthesize", "exercises", columns=["id", "solution", "tests"])


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_stage_declares_its_reads_and_writes(stage):
    """Each output a stage writes has a schema (Parquet) or a description (ARTIFACTS); each read is an output of one
    of its upstream stages, so the planner's order and the data contract agree."""
    assert stage.writes, f"{stage.name} declares no outputs"
    for name in stage.writes:
        assert (stage.name, name) in SCHEMAS or (stage.name, name) in ARTIFACTS, f"{stage.name}/{name}: undeclared"
    for read in stage.reads:
        upstream, name = read.split("/", 1)
        assert upstream in stage.after, f"{stage.name} reads {read}, but {upstream} is not upstream of it"
        assert name in STAGE_BY_NAME[upstream].writes, f"{stage.name} reads {read}, which {upstream} does not write"


def test_every_schema_and_artifact_is_a_declared_write():
    declared = {(s.name, name) for s in STAGES for name in s.writes}
    assert not (set(SCHEMAS) | set(ARTIFACTS)) - declared


def test_a_stage_with_a_missing_input_fails_before_work_with_one_error(tmp_path):
    """dedup with an ingest manifest but no ingest/documents: one error naming the input, and the stage never runs."""
    rd = RunDir(tmp_path / "run")
    cfg = load_config("tiny", overrides=["run.stages=[ingest,dedup]"])
    rd.write_manifest(Manifest(stage="ingest"))
    table = {s.name: s for s in STAGES}
    never = dataclasses.replace(STAGE_BY_NAME["dedup"], run=_never, needs_ray=False)
    with pytest.raises(FileNotFoundError, match=r"stage dedup cannot start.*ingest/documents has no Parquet files"):
        run_stage(never, cfg, rd, table)


def _never():
    raise AssertionError("the stage ran although an input is missing")


def test_output_check_names_a_wrong_column(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.makedirs("ingest", "skipped")
    pq.write_table(pa.table({"id": ["a"], "source": ["s"], "path": ["p"]}), rd.path("ingest", "skipped", "p.parquet"))
    problems = output_mismatches(STAGE_BY_NAME["ingest"], rd)
    assert problems == ["ingest/skipped: missing ['n_bytes', 'reason'], extra ['id']"]


def test_contract_check_names_undeclared_outputs_and_an_empty_stage(tmp_path):
    """tests/contract_checks.py, which the stage tests run on what their fixtures wrote: a stray entry under a
    stage's directory and a stage that wrote nothing are problems; a glob write (thesis's seed-*) matches."""
    rd = RunDir(tmp_path / "run")
    write_empty(rd, "ingest", "documents")
    rd.write_text("ingest/stray.txt", "x")
    rd.write_json("thesis/results.json", {})
    rd.write_json("thesis/seed-3/pretrain/done.json", {})
    assert contract_problems(rd, ["ingest", "thesis", "dedup"]) == [
        "ingest/stray.txt: not one of ingest's writes ('documents', 'skipped')",
        "dedup: nothing written under dedup/",
    ]


def _writes_ingest_off_schema(bad: bool):
    """A stand-in for ingest's ``run``: documents with or without a column dropped, and a stray file."""

    def run(cfg, rd):
        write_empty(rd, "ingest", "documents")
        if bad:
            rd.remove("ingest", "documents")
            rd.makedirs("ingest", "documents")
            pq.write_table(pa.table({"id": ["a"]}), rd.path("ingest", "documents", "part-0.parquet"))
        rd.write_text("ingest/stray.txt", "left by an older phiray")
        return Manifest(stage="ingest")

    return lambda: run


@pytest.mark.parametrize("bad", [True, False])
def test_the_runner_checks_what_a_stage_wrote_before_marking_it_done(tmp_path, bad, caplog):
    """run_stage reads one footer per Parquet output after the stage: off its schema, the stage fails with the
    output named and no manifest (the next run re-runs it); a stray entry is only logged (a reused run directory
    may hold an older phiray's leftovers)."""
    rd = RunDir(tmp_path / "run")
    cfg = load_config("tiny", overrides=["run.stages=[ingest]"])
    stage = dataclasses.replace(STAGE_BY_NAME["ingest"], run=_writes_ingest_off_schema(bad), needs_ray=False)
    if bad:
        with pytest.raises(RuntimeError, match=r"stage ingest wrote outputs off their schema.*ingest/documents: miss"):
            run_stage(stage, cfg, rd, {"ingest": stage})
        assert rd.read_manifest("ingest") is None
    else:
        assert run_stage(stage, cfg, rd, {"ingest": stage}).stage == "ingest"
        assert rd.read_manifest("ingest") is not None
    assert "ingest/stray.txt is none of its declared writes" in caplog.text
