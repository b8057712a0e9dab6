"""The sweep stage on packed shards of 3 sources (fixture in tokenize's schema): weights reach the loader,
a short ASHA sweep writes its table/plot/best.yaml, and best.yaml is a config pretrain loads."""

from __future__ import annotations

import csv
import io

import numpy as np
import pyarrow.parquet as pq
import pytest
from contract_checks import contract_problems
from sweep_fixtures import SOURCES, make_packed_run, source_of, sweep_config
from tracking_checks import plugin_tags, read_scalars

from phiray.config import load_config
from phiray.pipeline import run_stage
from phiray.rundir import RunDir
from phiray.stages import STAGE_BY_NAME
from phiray.stages.sweep import build_specs
from phiray.tune.space import build_points

SEQUENCES = {name: 96 for name in SOURCES}


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory):
    return make_packed_run(tmp_path_factory.mktemp("sweep") / "run")


def test_mixture_weights_reach_the_data_loader(packed_run):
    from phiray.train.loop import Trainer

    cfg = sweep_config("sweep.num_trials=1", "sweep.mixtures=[{textbooks: 1.0}]")
    points = build_points(cfg.sweep, seed=3)
    specs, _ = build_specs(cfg, packed_run, points, SEQUENCES)
    only = Trainer(specs[points[-1]["id"]], 0, 1, distributed=False)
    tokens = np.concatenate([only.sampler.batch(step, 0, 0, 8)[0].ravel() for step in range(20)])
    assert {source_of(int(t)) for t in tokens} == {"textbooks"}  # 100% one source: only its tokens
    mixed = Trainer(specs[points[0]["id"]], 0, 1, distributed=False)
    drawn = np.concatenate([mixed.sampler.batch(step, 0, 0, 8)[0][:, 0] for step in range(300)])
    share = {name: np.mean([source_of(int(t)) == name for t in drawn]) for name in SOURCES}
    for name, weight in points[0]["mixture"].items():  # sequences drawn in proportion to the weights
        assert abs(share[name] - weight) < 0.06, (share, points[0]["mixture"])


def test_short_asha_sweep_writes_table_plot_and_best_yaml(ray_session, packed_run):
    cfg = sweep_config(
        "sweep.num_trials=1",
        "sweep.mixtures=[{code: 1.0}]",
        "sweep.max_steps=6",
        "sweep.eval_every=3",
        "sweep.grace_period=3",
        "sweep.reduction_factor=3",
    )
    manifest = run_stage(STAGE_BY_NAME["sweep"], cfg, packed_run, STAGE_BY_NAME)
    rows = pq.read_table(packed_run.path("sweep/results.parquet")).to_pylist()
    assert len(rows) == 2 and manifest.rows["trials"] == 2
    csv_rows = list(csv.DictReader(io.StringIO(packed_run.read_text("sweep/results.csv"))))
    assert [r["status"] for r in csv_rows] == [r["status"] for r in rows]
    assert packed_run.read_bytes("sweep/plot.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert {r["status"] for r in rows} <= {"completed", "stopped_early"}
    assert all(r["stopped_early"] == (r["steps"] < r["max_steps"]) for r in rows)
    assert sum(r["status"] == "completed" for r in rows) >= 1
    for r in rows:  # every trial reports validation loss on every swept source, and ran once
        assert all(r[f"val_loss/{s}"] > 0 for s in SOURCES) and r["attempts"] == 1 and r["steps_trained"] == r["steps"]
    code_only = next(r for r in rows if r["w/code"] == 1.0)
    assert code_only["sequences/code"] > 0
    assert not code_only.get("sequences/textbooks") and not code_only.get("sequences/exercises")
    assert code_only["val_loss/code"] < min(code_only["val_loss/textbooks"], code_only["val_loss/exercises"])
    finished = [r for r in rows if r["status"] == "completed"]
    assert all(r["pass@1_tasks"] == 2 and 0 <= r["pass@1"] <= 1 for r in finished)
    assert manifest.metrics["selection_split"] == "synthesize/validation" and manifest.metrics["validation_tasks"] == 2
    best = load_config("tiny", config_file=packed_run.path("sweep/best.yaml"))
    winner = manifest.metrics["best"]
    assert best.pretrain.mixture == winner["point"]["mixture"]
    assert winner["objective"] == min(r["objective"] for r in finished)
    assert best.model == load_config("tiny").model  # proxy overrides stay out of the overlay
    assert not contract_problems(packed_run, ["sweep"])
    # TensorBoard, through Tune's logger callback: each trial's directory, at its optimizer steps, + hparams.
    for r in rows:
        trial_dir = packed_run.path("sweep/tune", r["trial_id"])
        scalars = read_scalars(trial_dir)
        reported = [0, 3, 6][: r["steps"] // 3 + 1]
        for tag in ["eval/val_loss"] + [f"eval/val_loss/{s}" for s in SOURCES]:
            assert [step for step, _ in scalars[tag]] == reported, (r["trial_id"], tag)
        assert scalars["eval/val_loss"][-1][1] == pytest.approx(r["val_loss"], rel=1e-6)
        assert [step for step, _ in scalars["train/loss"]] == reported[1:] and "train/tokens_per_s" in scalars
        assert not any(tag.startswith("ray/tune/") for tag in scalars)  # Tune's default logger was replaced
        assert plugin_tags(trial_dir, "hparams")  # the trial's point, for TensorBoard's HParams tab
    finished_dir = packed_run.path("sweep/tune", finished[0]["trial_id"])
    assert read_scalars(finished_dir)["eval/pass_at_1"] == [(6, pytest.approx(finished[0]["pass@1"]))]


def test_sweep_selects_on_the_validation_split_only(tmp_path, packed_run):
    """The proxy pass@1 reads synthesize/validation; the test split (synthesize/heldout) is never opened:
    here it is not even Parquet, and the rows come from validation alone."""
    from phiray.stages.sweep import validation_rows

    rows = validation_rows(sweep_config("sweep.validation_limit=10"), packed_run)
    assert len(rows) == 3 and all(r["entry_point"].startswith("double_") for r in rows)
    rd = RunDir(tmp_path / "run")
    rd.write_text("synthesize/heldout/part-0.parquet", "not parquet: reading the test split fails")
    for name in packed_run.listdir("synthesize/validation"):
        rd.write_bytes(f"synthesize/validation/{name}", packed_run.read_bytes(f"synthesize/validation/{name}"))
    assert [r["id"] for r in validation_rows(sweep_config("sweep.validation_limit=10"), rd)] == [r["id"] for r in rows]
    assert validation_rows(sweep_config("sweep.validation_limit=0"), rd) == []
