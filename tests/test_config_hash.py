"""Config hashing covers exactly the fields that change a stage's outputs.

Every stage of the real STAGES table runs as a fake (records that it ran) through the real planner:
flipping every speed-only field re-runs nothing; flipping one output-changing field re-runs exactly
the stages that hash it and everything downstream of them.
"""

import json
import typing

import fake_stages
import pytest

from phiray.config import RunConfig, load_config, speed_only_paths
from phiray.pipeline import Stage, run_pipeline
from phiray.rundir import RunDir
from phiray.stages import STAGES

ALL = [s.name for s in STAGES]
TABLE = [
    Stage(
        s.name,
        s.help,
        s.sections,
        s.after,
        needs_ray=False,
        run=lambda name=s.name: getattr(fake_stages, f"run_{name}"),
        hashed_if=s.hashed_if,
    )
    for s in STAGES
]
BY_NAME = {s.name: s for s in TABLE}
# One output-changing field of each stage's own section.
OUTPUT_CHANGE = {
    "ingest": "ingest.max_bytes=1000",
    "dedup": "dedup.threshold=0.5",
    "decontaminate": "decontaminate.ngram=9",
    "annotate": "annotate.sample_size=77",
    "classify": "classify.n_estimators=7",
    "filter": "filter.threshold=0.25",
    "synthesize": "synthesize.n_textbooks=5",
    "tokenize": "tokenize.seq_len=32",
    "pretrain": "pretrain.lr=0.5",
    "grow": "grow.lr=0.5",
    "finetune": "finetune.lr=0.5",
    "control": "control.lr=0.5",
    "evaluate": "evaluate.max_new_tokens=5",
    "sweep": "sweep.num_trials=3",
    "similarity": "similarity.top_k=5",
    "thesis": "thesis.seeds=2",
}


@pytest.fixture(autouse=True)
def _fake_every_stage(monkeypatch):
    for name in ALL:
        monkeypatch.setattr(fake_stages, f"run_{name}", fake_stages._stage(name), raising=False)
    fake_stages.CALLS.clear()


def cfg_with(*overrides: str) -> RunConfig:
    return load_config("tiny", overrides=[f"run.stages={json.dumps(ALL)}", *overrides])


def _field(path: str):
    model, *parts = RunConfig, *path.split(".")
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[parts[-1]]


def flipped(path: str, cfg: RunConfig) -> str:
    """An override giving ``path`` a different valid value."""
    value, annotation = cfg.section(path), _field(path).annotation
    if typing.get_origin(annotation) is typing.Literal:
        new = next(choice for choice in typing.get_args(annotation) if choice != value)
    elif value is None:
        inner = next(t for t in typing.get_args(annotation) if t is not type(None))
        new = {int: 3, float: 0.5, str: "elsewhere", bool: True}[inner]
    elif isinstance(value, bool):
        new = not value
    elif isinstance(value, (int, float)):
        new = value * 2 if value else (1 if isinstance(value, int) else 0.25)
    elif isinstance(value, dict):
        new = {} if value else {"custom": 1.0}
    elif isinstance(value, str):
        new = value + "_OTHER"
    else:
        raise AssertionError(f"no flip for {path}={value!r}")
    return f"{path}={json.dumps(new)}"


def speed_only_of(stage: Stage) -> list[str]:
    top = [p for p in stage.sections if "." not in p]
    return [path for p in top for path in speed_only_paths(RunConfig.model_fields[p].annotation, p)]


def downstream_of(names: set[str]) -> set[str]:
    out = set(names)
    for stage in TABLE:  # the table is in dependency order
        if set(stage.after) & out:
            out.add(stage.name)
    return out


def _fresh_run(tmp_path) -> RunDir:
    rd = RunDir(tmp_path / "run")
    run_pipeline(TABLE, cfg_with(), rd)
    assert fake_stages.CALLS == ALL
    fake_stages.CALLS.clear()
    return rd


def test_every_stage_declares_speed_only_fields_where_it_has_any():
    declared = {path for stage in TABLE for path in speed_only_of(stage)}
    for path in (
        "teacher.concurrency",
        "teacher.prices",
        "teacher.timeout_s",
        "teacher.max_retries",
        "sandbox.workers",
        "sandbox.ray_resources",
        "filter.actors",
        "filter.num_cpus_per_actor",
        "synthesize.calls_per_actor",
        "synthesize.actors",
        "train.max_failures",
        "sweep.max_concurrent",
    ):
        assert path in declared


@pytest.mark.parametrize("name", ALL)
def test_speed_only_fields_rerun_nothing(tmp_path, name):
    rd = _fresh_run(tmp_path)
    base = cfg_with()
    flips = [flipped(path, base) for path in speed_only_of(BY_NAME[name])]
    assert flips or name in ("ingest", "decontaminate", "tokenize", "grow", "finetune", "control")
    run_pipeline(TABLE, cfg_with(*flips), rd)
    assert fake_stages.CALLS == [], f"{name}: {flips} re-ran {fake_stages.CALLS}"


def test_all_speed_only_fields_at_once_rerun_nothing(tmp_path):
    rd = _fresh_run(tmp_path)
    flips = sorted({flipped(path, cfg_with()) for stage in TABLE for path in speed_only_of(stage)})
    run_pipeline(TABLE, cfg_with(*flips), rd)
    assert fake_stages.CALLS == []


@pytest.mark.parametrize("name", ALL)
def test_output_field_reruns_exactly_its_stage_and_downstream(tmp_path, name):
    rd = _fresh_run(tmp_path)
    path = OUTPUT_CHANGE[name].split("=")[0]
    changed = cfg_with(OUTPUT_CHANGE[name])
    assert changed.section(path) != cfg_with().section(path)
    hashing = {s.name for s in TABLE if path.split(".")[0] in s.hashed_sections(changed)}
    assert name in hashing
    run_pipeline(TABLE, changed, rd)
    assert fake_stages.CALLS == [n for n in ALL if n in downstream_of(hashing)]
    fake_stages.CALLS.clear()
    run_pipeline(TABLE, changed, rd)
    assert fake_stages.CALLS == []


def test_teacher_is_hashed_for_annotate_only_with_the_llm_annotator(tmp_path):
    rd = _fresh_run(tmp_path)
    run_pipeline(TABLE, cfg_with("teacher.model=other-model"), rd)
    assert "annotate" not in fake_stages.CALLS and fake_stages.CALLS[0] == "synthesize"
    fake_stages.CALLS.clear()
    llm = ("annotate.annotator=llm", "classify.model=forest", "teacher.model=other-model")
    run_pipeline(TABLE, cfg_with(*llm), rd)
    assert fake_stages.CALLS[0] == "annotate"
    fake_stages.CALLS.clear()
    run_pipeline(TABLE, cfg_with(*llm, "teacher.concurrency=3", "teacher.prices={}"), rd)
    assert fake_stages.CALLS == []
    run_pipeline(TABLE, cfg_with(*llm, "teacher.temperature=0.1"), rd)
    assert fake_stages.CALLS[0] == "annotate"


def test_sandbox_is_hashed_for_synthesize_only_when_it_verifies(tmp_path):
    rd = _fresh_run(tmp_path)
    run_pipeline(TABLE, cfg_with("sandbox.timeout_s=5"), rd)
    assert fake_stages.CALLS[0] == "synthesize" and "evaluate" in fake_stages.CALLS
    fake_stages.CALLS.clear()
    run_pipeline(TABLE, cfg_with("sandbox.timeout_s=5", "synthesize.verify=false"), rd)
    assert fake_stages.CALLS[0] == "synthesize"  # verify itself changes outputs
    fake_stages.CALLS.clear()
    run_pipeline(TABLE, cfg_with("sandbox.timeout_s=6", "synthesize.verify=false"), rd)
    assert fake_stages.CALLS == ["evaluate", "thesis"]  # only evaluate and thesis still execute code
