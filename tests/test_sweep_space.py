"""The sweep's search space, trial configs, best.yaml and the --resume flag (no Ray needed)."""

from __future__ import annotations

import math

import pytest
import yaml

from phiray.cli import build_parser
from phiray.config import ConfigError, SweepConfig, load_config
from phiray.stages.sweep import trial_config
from phiray.tune.outputs import best_overlay, best_row
from phiray.tune.space import build_points, grid_mixtures, nested, point_overrides, trial_steps

SOURCES = ["code", "textbooks", "exercises"]


def test_dirichlet_points_lie_on_the_simplex_and_are_seeded():
    sweep = SweepConfig(sources=SOURCES, num_trials=12, mixtures=[{"code": 1, "textbooks": 4}])
    points = build_points(sweep, seed=7)
    assert len(points) == 13 and [p["id"] for p in points] == [f"p{i:03d}" for i in range(13)]
    for p in points:
        assert set(p["mixture"]) == set(SOURCES) and math.isclose(sum(p["mixture"].values()), 1, abs_tol=1e-5)
        assert all(w >= 0 for w in p["mixture"].values())
    assert points[-1]["mixture"] == {"code": 0.2, "textbooks": 0.8, "exercises": 0.0}  # explicit, normalised
    assert build_points(sweep, seed=7) == points and build_points(sweep, seed=8) != points
    corners = build_points(SweepConfig(sources=SOURCES, num_trials=200, dirichlet_alpha=0.05), seed=1)
    assert sum(max(p["mixture"].values()) > 0.95 for p in corners) > 150  # small alpha: near the corners


def test_grid_sampler_crosses_the_lattice_with_every_dimension():
    assert len(grid_mixtures(SOURCES, 4)) == math.comb(4 + 2, 2)
    assert all(all(abs(w * 4 - round(w * 4)) < 1e-9 for w in m.values()) for m in grid_mixtures(SOURCES, 4))
    sweep = SweepConfig(
        sources=SOURCES,
        sampler="grid",
        grid_steps=2,
        lr=[1e-3, 3e-3],
        passes=[1, 2],
        extra_space={"pretrain.weight_decay": [0.0, 0.1, 0.2]},
    )
    points = build_points(sweep, seed=0)
    assert len(points) == 6 * 2 * 2 * 3
    assert {(p["lr"], p["passes"], p["extra"]["pretrain.weight_decay"]) for p in points} == {
        (lr, ps, wd) for lr in (1e-3, 3e-3) for ps in (1, 2) for wd in (0.0, 0.1, 0.2)
    }
    random_search = build_points(sweep.model_copy(update={"sampler": "dirichlet", "num_trials": 20}), seed=0)
    assert len(random_search) == 20 and {p["lr"] for p in random_search} == {1e-3, 3e-3}


def test_bad_space_is_refused_clearly():
    with pytest.raises(ValueError, match="not in sweep.sources"):
        build_points(SweepConfig(sources=SOURCES, mixtures=[{"web": 1.0}]), seed=0)
    with pytest.raises(ValueError, match="no positive weight"):
        build_points(SweepConfig(sources=SOURCES, mixtures=[{"code": 0.0}]), seed=0)
    with pytest.raises(ValueError, match="at least one choice"):
        build_points(SweepConfig(sources=SOURCES, extra_space={"pretrain.lr": []}), seed=0)


def test_point_overrides_make_a_valid_trial_config_and_replace_the_mixture():
    cfg = load_config("tiny", overrides=["pretrain.mixture={code: 1, unfiltered: 1}"])
    point = {
        "id": "p000",
        "mixture": {"code": 0.25, "textbooks": 0.75},
        "passes": None,
        "lr": 5e-3,
        "extra": {"pretrain.weight_decay": 0.0, "model.n_layer": 1},
    }
    trial = trial_config(cfg, point_overrides(point))
    assert trial.pretrain.mixture == {"code": 0.25, "textbooks": 0.75}  # replaced whole: no 'unfiltered' left
    assert trial.pretrain.lr == 5e-3 and trial.pretrain.weight_decay == 0.0 and trial.model.n_layer == 1
    with pytest.raises(ConfigError, match="pretrain.no_such_field"):
        trial_config(cfg, {"pretrain.no_such_field": 1})


def test_passes_set_the_step_budget():
    sweep = SweepConfig(sources=SOURCES, max_steps=40, max_steps_cap=500)
    sequences = {"code": 100, "textbooks": 60, "exercises": 1000}
    point = {"mixture": {"code": 0.5, "textbooks": 0.5, "exercises": 0.0}, "passes": 2}
    assert trial_steps(point, sweep, sequences, global_batch=16) == math.ceil(2 * 160 / 16)
    assert trial_steps({**point, "passes": None}, sweep, sequences, 16) == 40
    assert trial_steps({**point, "mixture": {"exercises": 1.0}, "passes": 50}, sweep, sequences, 16) == 500


def test_best_yaml_is_a_config_overlay_pretrain_loads(tmp_path):
    rows = [
        {"trial_id": "a", "point_id": "p000", "status": "completed", "objective": 3.0, "steps": 40},
        {"trial_id": "b", "point_id": "p001", "status": "stopped_early", "objective": 1.0, "steps": 10},
        {"trial_id": "c", "point_id": "p002", "status": "completed", "objective": 2.5, "steps": 40},
    ]
    best = best_row(rows, "min")
    assert best["trial_id"] == "c"  # a stopped trial's early loss is not comparable: survivors only
    assert best_row(rows, "max")["trial_id"] == "a"
    point = {
        "id": "p002",
        "mixture": {"code": 0.3, "textbooks": 0.7},
        "passes": 2.0,
        "lr": 2e-3,
        "extra": {"pretrain.weight_decay": 0.05},
    }
    path = tmp_path / "best.yaml"
    path.write_text(best_overlay(best, point, "val_loss", "min", pretrain_steps=123))
    cfg = load_config("tiny", config_file=path)
    assert cfg.pretrain.mixture == {"code": 0.3, "textbooks": 0.7} and cfg.pretrain.lr == 2e-3
    assert cfg.pretrain.weight_decay == 0.05 and cfg.pretrain.max_steps == 123
    assert yaml.safe_load(path.read_text()) == nested(
        {
            "pretrain.mixture": point["mixture"],
            "pretrain.lr": 2e-3,
            "pretrain.weight_decay": 0.05,
            "pretrain.max_steps": 123,
        }
    )


def test_resume_flag_and_override_are_not_part_of_the_config_hash():
    args = build_parser().parse_args(["sweep", "--run-dir", "x", "--resume", "sweep.num_trials=3"])
    assert args.resume is True and args.overrides == ["sweep.num_trials=3"]
    assert not hasattr(build_parser().parse_args(["pretrain", "--run-dir", "x"]), "resume")
    plain, resumed = load_config("tiny"), load_config("tiny", overrides=["sweep.resume=true"])
    assert resumed.sweep.resume and not plain.sweep.resume
    assert plain.section_hash(["sweep"]) == resumed.section_hash(["sweep"])  # a resume is not a new sweep
    assert "resume" not in resumed.to_yaml()
