"""phiray.schemas: one schema per stage output, for writing, empty outputs and upstream checks."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from phiray.rundir import RunDir
from phiray.schemas import SCHEMAS, SYNTHESIZE_EXERCISES, require, write_empty
from phiray.stages import STAGE_BY_NAME
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
