import fake_stages
import pyarrow.fs as pafs
import pytest

from phiray.config import load_config
from phiray.pipeline import Stage, assess, run_pipeline
from phiray.rundir import Manifest, RunDir

TABLE = [
    Stage("a", "first", ("ingest",), (), needs_ray=False, run=lambda: fake_stages.run_a),
    Stage("b", "second", ("dedup",), ("a",), needs_ray=False, run=lambda: fake_stages.run_b),
    Stage("c", "third", ("pretrain",), ("b",), needs_ray=False, run=lambda: fake_stages.run_c),
]


def cfg_with(*overrides):
    return load_config("tiny", overrides=["run.stages=[a, b, c]", *overrides])


@pytest.fixture(autouse=True)
def _reset_calls():
    fake_stages.CALLS.clear()


def _rundirs(tmp_path):
    local = RunDir(tmp_path / "local")
    uri = RunDir(f"file://{tmp_path}/uri")
    (tmp_path / "sub").mkdir()
    sub = RunDir("run", filesystem=pafs.SubTreeFileSystem(str(tmp_path / "sub"), pafs.LocalFileSystem()))
    return [local, uri, sub]


def test_manifest_round_trip_on_every_filesystem(tmp_path):
    for rd in _rundirs(tmp_path):
        m = Manifest(
            stage="ingest",
            rows={"in": 3, "kept": 2},
            metrics={"curve": [1.0, 0.5], "nested": {"x": 1}},
            headline={"kept": 2},
        )
        rd.finish(m, config_hash="abc", inputs={"up": "r1"}, started_at="t0", wall_time_s=1.23456)
        back = rd.read_manifest("ingest")
        assert back == m and back.versions["python"] and "torch" in back.versions and "ray" in back.versions
        assert rd.listdir("ingest") == ["_manifest.json"]  # no temp file left behind
        assert rd.read_manifest("missing") is None
        with rd.local_dir("models/x") as local:
            (__import__("pathlib").Path(local) / "w.bin").write_bytes(b"123")
        assert rd.read_bytes("models/x/w.bin") == b"123"


def test_skip_then_rerun_changed_stage_and_downstream_only(tmp_path):
    for rd in _rundirs(tmp_path):
        fake_stages.CALLS.clear()
        run_pipeline(TABLE, cfg_with(), rd)
        assert fake_stages.CALLS == ["a", "b", "c"]
        run_pipeline(TABLE, cfg_with(), rd)
        assert fake_stages.CALLS == ["a", "b", "c"]  # second run skips everything
        assert [s.state for s in assess(TABLE, cfg_with(), rd)] == ["done"] * 3
        changed = cfg_with("dedup.threshold=0.5")  # the middle stage's section
        states = assess(TABLE, changed, rd)
        assert [s.state for s in states] == ["done", "stale", "stale"]
        assert "config changed" in states[1].reason and "upstream b" in states[2].reason
        run_pipeline(TABLE, changed, rd)
        assert fake_stages.CALLS == ["a", "b", "c", "b", "c"]
        run_pipeline(TABLE, changed, rd, force={"c"})
        assert fake_stages.CALLS[-1] == "c" and len(fake_stages.CALLS) == 6
        assert rd.read_text("c/out.txt") == "c lr=0.003"


def test_single_stage_rerun_makes_downstream_stale(tmp_path):
    from phiray.pipeline import run_stage

    rd = RunDir(tmp_path / "r")
    run_pipeline(TABLE, cfg_with(), rd)
    run_stage(TABLE[0], cfg_with(), rd, {s.name: s for s in TABLE})
    states = assess(TABLE, cfg_with(), rd)
    assert [s.state for s in states] == ["done", "stale", "stale"]
    assert states[1].reason == "upstream a changed"


def test_failed_stage_leaves_no_manifest_and_resumes(tmp_path):
    rd = RunDir(tmp_path / "r")
    boom = TABLE[:2] + [Stage("c", "third", ("pretrain",), ("b",), needs_ray=False, run=lambda: fake_stages.run_boom)]
    with pytest.raises(RuntimeError, match="boom"):
        run_pipeline(boom, cfg_with(), rd)
    assert rd.read_manifest("a") and rd.read_manifest("b") and rd.read_manifest("c") is None
    run_pipeline(TABLE, cfg_with(), rd)
    assert fake_stages.CALLS == ["a", "b", "boom", "c"]  # a and b were not repeated


def test_missing_upstream_is_a_clear_error(tmp_path):
    from phiray.pipeline import run_stage

    rd = RunDir(tmp_path / "r")
    with pytest.raises(RuntimeError, match="needs stage a first"):
        run_stage(TABLE[1], cfg_with(), rd, {s.name: s for s in TABLE})


def test_a_conditional_upstream_is_needed_only_when_its_condition_holds(tmp_path):
    """tokenize reads similarity's pruned exercises only with similarity.prune_tau set: without it, a run
    that never ran similarity is no gap, and a re-run similarity does not make tokenize stale."""
    from phiray.pipeline import relevant_upstream, run_stage
    from phiray.stages import STAGE_BY_NAME, STAGES

    table = {s.name: s for s in STAGES}
    rd = RunDir(tmp_path / "r")
    tokenize = STAGE_BY_NAME["tokenize"]
    plain = load_config("tiny")
    pruned = load_config("tiny", overrides=["similarity.prune_tau=0.9"])
    assert "similarity" in plain.run.stages
    assert "similarity" not in relevant_upstream(tokenize, plain, rd, table)
    assert "similarity" in relevant_upstream(tokenize, pruned, rd, table)
    with pytest.raises(RuntimeError, match="needs stage similarity first"):
        for name in ("decontaminate", "filter", "synthesize"):
            rd.write_manifest(Manifest(stage=name))
        run_stage(tokenize, pruned, rd, table)


def test_parquet_files_and_read_table_of_a_stage_output(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from phiray.rundir import parquet_files

    rd = RunDir(tmp_path / "run")
    rd.makedirs("s", "out", "nested")
    pq.write_table(pa.table({"id": ["b"], "text": ["y"]}), rd.path("s", "out", "nested", "part-1.parquet"))
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), rd.path("s", "out", "part-0.parquet"))
    rd.write_text("s/out/_SUCCESS", "")
    files = rd.parquet_files("s", "out")
    assert files == [rd.path("s", "out", "nested", "part-1.parquet"), rd.path("s", "out", "part-0.parquet")]
    assert parquet_files(rd.fs, files[1]) == [files[1]]  # a single file is its own dataset
    assert parquet_files(rd.fs, rd.path("s", "out", "_SUCCESS")) == []
    assert rd.parquet_files("s", "absent") == []
    table = rd.read_table("s", "out", columns=["id", "no_such_column"])
    assert table.column_names == ["id"] and sorted(table["id"].to_pylist()) == ["a", "b"]
    assert rd.read_table("s", "out").num_columns == 2
    assert rd.read_table("s", "absent").num_rows == 0


def test_a_changed_rule_version_makes_the_stage_and_downstream_stale(tmp_path, monkeypatch):
    """What shapes a stage's output beyond its config (the offline annotator's rules, the judge's prompt)
    is part of its hash: labels written by an older heuristic are not reused as if current."""
    from phiray.data import annotators
    from phiray.stages import STAGE_BY_NAME

    version = {"v": "rules-1"}
    table = [
        TABLE[0],
        Stage("b", "second", ("dedup",), ("a",), False, lambda: fake_stages.run_b, version=lambda c: version["v"]),
        TABLE[2],
    ]
    rd = RunDir(tmp_path / "r")
    run_pipeline(table, cfg_with(), rd)
    assert [s.state for s in assess(table, cfg_with(), rd)] == ["done"] * 3
    version["v"] = "rules-2"
    states = assess(table, cfg_with(), rd)
    assert [s.state for s in states] == ["done", "stale", "stale"] and "config changed" in states[1].reason

    annotate, cfg = STAGE_BY_NAME["annotate"], load_config("tiny", overrides=["annotate.annotator=heuristic"])
    before = annotate.config_hash(cfg)
    monkeypatch.setattr(annotators, "HEURISTIC_VERSION", "heuristic-next")
    assert annotate.config_hash(cfg) != before
    import phiray.stages

    learned = load_config("tiny", overrides=["annotate.annotator=learned"])
    before = annotate.config_hash(learned)
    monkeypatch.setattr(phiray.stages, "MODEL_PATH", "labels/code_labels.json")  # other weights
    assert annotate.config_hash(learned) != before
    llm = load_config("tiny", overrides=["annotate.annotator=llm", "classify.model=forest"])
    before = annotate.config_hash(llm)
    monkeypatch.setattr(annotators, "LLM_PROMPT", annotators.LLM_PROMPT + "\nBe strict.")
    assert annotate.config_hash(llm) != before
    assert STAGE_BY_NAME["dedup"].config_hash(cfg) == cfg.section_hash(("dedup",))  # no version: hash unchanged
