"""sweep: Ray Tune search over data-mixture weights (and optional passes / learning rate / any config field)
on proxy models, trained on the already-packed shards of ``tokenize``.

Each trial is a short pretrain with phiray's training loop (:mod:`phiray.tune.trainable`), one process,
``sweep.cpus_per_trial`` CPUs (or a fraction of a GPU); ASHA stops the weak ones at ``grace_period x
reduction_factor^k`` steps. Tune's experiment lives at ``<run>/sweep/tune``: killing the driver and running
``phiray sweep --resume`` (``sweep.resume=true``) restores it with ``Tuner.restore`` — finished trials stay
finished, unfinished ones continue from their last checkpoint. Outputs: ``sweep/results.{parquet,csv}``,
``sweep/plot.png``, ``sweep/best.yaml`` (an overlay for ``phiray pretrain --config``), ``sweep/space.json``.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

from phiray.config import RunConfig, set_path, validate
from phiray.rundir import Manifest, RunDir
from phiray.train.data import TokenSource
from phiray.train.driver import build_spec, source_paths
from phiray.train.spec import TrainSpec
from phiray.tune import outputs
from phiray.tune.space import build_points, point_overrides, space_hash, trial_steps
from phiray.tune.tracking import tune_callbacks
from phiray.tune.trainable import TrialContext, run_trial

log = logging.getLogger("phiray")

EXPERIMENT = "tune"
SPACE_FILE = "sweep/space.json"
# Trials select on the validation split (held-out instances of the train families); the test split
# (synthesize/heldout, held-out families) is scored once, by evaluate, and never read here.
VALIDATION = "synthesize/validation"


def trial_config(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """The run's config + dotted overrides, validated (a bad path fails naming the key)."""
    data = cfg.model_dump(mode="json")
    for path, value in overrides.items():
        set_path(data, path, value)
    return validate(data)


def _present_sources(cfg: RunConfig, rd: RunDir) -> tuple[list[str], list[str], dict[str, int]]:
    wanted = list(dict.fromkeys(cfg.sweep.sources))
    present = [s for s in wanted if source_paths(rd, s) is not None]
    missing = [s for s in wanted if s not in present]
    if not present:
        raise FileNotFoundError(
            f"sweep: none of the sources {wanted} is packed under {rd.path('tokenize')}: run the tokenize stage first"
        )
    for name in missing:
        log.warning("sweep: token source %r not found under tokenize/ (left out of the sweep)", name)
    sequences = {s: len(TokenSource(rd.fs, rd.path(source_paths(rd, s)[0]))) for s in present}
    return present, missing, sequences


def build_specs(
    cfg: RunConfig, rd: RunDir, points: list[dict[str, Any]], sequences: dict[str, int]
) -> tuple[dict[str, TrainSpec], dict[str, int]]:
    """point id -> the worker spec of its trial; point id -> its step budget."""
    sweep = cfg.sweep
    eval_sources = list(dict.fromkeys(list(sweep.sources) + list(sweep.eval_sources)))
    specs, budgets = {}, {}
    for point in points:
        base = {
            **sweep.proxy,
            "pretrain.eval_every": sweep.eval_every,
            "pretrain.log_every": sweep.eval_every,
            "pretrain.eval_batches": sweep.eval_batches,
            "pretrain.eval_sources": eval_sources,
        }
        trial_cfg = trial_config(cfg, base | point_overrides(point))
        steps = trial_steps(point, sweep, sequences, trial_cfg.pretrain.global_batch_size)
        trial_cfg = trial_config(trial_cfg, {"pretrain.max_steps": steps})
        trial_cfg.train.use_gpu = sweep.gpus_per_trial > 0
        spec = build_spec(trial_cfg, rd, "pretrain", stage="sweep", mixture=point["mixture"])
        # Trials keep no final model and have no Ray Train workers.
        specs[point["id"]] = spec.model_copy(update={"output_dir": None, "workers_dir": None})
        budgets[point["id"]] = steps
    return specs, budgets


def validation_rows(cfg: RunConfig, rd: RunDir) -> list[dict[str, Any]]:
    """A few validation exercises for the proxy pass@1 (none, counted, when synthesize made none)."""
    if cfg.sweep.validation_limit == 0 or not rd.exists(VALIDATION):
        return []
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = []
    for file in rd.parquet_files(VALIDATION):
        with rd.fs.open_input_file(file) as handle:
            rows += pq.read_table(handle, columns=["id", "prompt", "solution", "tests", "entry_point"]).to_pylist()
        if len(rows) >= cfg.sweep.validation_limit:
            break
    return sorted(rows, key=lambda r: r["id"])[: cfg.sweep.validation_limit]


def _trainable(cfg: RunConfig, context: TrialContext):
    from ray import tune

    resources = {"cpu": cfg.sweep.cpus_per_trial} | (
        {"gpu": cfg.sweep.gpus_per_trial} if cfg.sweep.gpus_per_trial else {}
    )
    return tune.with_resources(tune.with_parameters(run_trial, context=context), resources)


def _tuner(cfg: RunConfig, rd: RunDir, trainable, points: list[dict[str, Any]], max_t: int, resume: bool):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    path = rd.path("sweep", EXPERIMENT)
    if resume:
        log.info("sweep: resuming the experiment at %s", path)
        return tune.Tuner.restore(
            path, trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=rd.fs
        )
    sweep = cfg.sweep
    scheduler = ASHAScheduler(
        time_attr="step",
        max_t=max_t,
        grace_period=min(sweep.grace_period, max_t),
        reduction_factor=sweep.reduction_factor,
    )
    return tune.Tuner(
        trainable,
        param_space={"point": tune.grid_search(points)},
        tune_config=tune.TuneConfig(
            metric=sweep.objective,
            mode=sweep.mode,
            scheduler=scheduler,
            max_concurrent_trials=sweep.max_concurrent,
            trial_dirname_creator=lambda trial: trial.trial_id,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=rd.path("sweep"),
            storage_filesystem=rd.fs,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
            callbacks=tune_callbacks(cfg.train.tracking, rd),
        ),
    )


def _can_resume(cfg: RunConfig, rd: RunDir, identity: str) -> bool:
    from ray import tune

    if not cfg.sweep.resume:
        return False
    if not tune.Tuner.can_restore(rd.path("sweep", EXPERIMENT), storage_filesystem=rd.fs):
        log.warning("sweep: --resume given but no interrupted sweep at %s: starting a new one", rd.path("sweep"))
        return False
    stored = rd.read_json(SPACE_FILE).get("identity") if rd.exists(SPACE_FILE) else None
    if stored != identity:
        raise ValueError(
            "sweep: the config changed since the interrupted sweep (search space, proxy or training "
            "settings): run `phiray sweep` without --resume to start over"
        )
    return True


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Ray Tune search of the sweep space on proxy pretrain runs: results table, plot and best.yaml."""
    sweep = cfg.sweep
    present, missing, sequences = _present_sources(cfg, rd)
    sweep_eff = sweep.model_copy(
        update={
            "sources": present,
            "mixtures": [
                {k: v for k, v in m.items() if k in present}
                for m in sweep.mixtures
                if any(m.get(s, 0) > 0 for s in present)
            ],
        }
    )
    cfg = cfg.model_copy(update={"sweep": sweep_eff})
    points = build_points(sweep_eff, cfg.run.seed)
    specs, budgets = build_specs(cfg, rd, points, sequences)
    identity = space_hash(points, {"config": cfg.section_hash(["sweep", "model", "train", "pretrain", "run.seed"])})
    resume = _can_resume(cfg, rd, identity)
    if not resume:
        rd.remove("sweep")  # a fresh sweep: no stale trials, records or outputs
        rd.write_json(
            SPACE_FILE, {"identity": identity, "points": points, "budgets": budgets, "missing_sources": missing}
        )
    for name in ("results.parquet", "results.csv", "plot.png", "best.yaml"):
        rd.remove("sweep", name)
    validation = validation_rows(cfg, rd)
    context = TrialContext(
        specs=specs,
        threads=max(1, int(sweep.cpus_per_trial)),
        checkpoint=sweep.checkpoint,
        pass_every=sweep.pass_at_1_every,
        objective=sweep.objective,
        validation=validation,
        sandbox=cfg.sandbox,
        max_new_tokens=sweep.max_new_tokens,
    )
    # Tune snapshots the experiment every ~10 s by default; a driver killed in between would forget trial
    # completions. Snapshots of a few dozen trials are tiny, so take them every second (env still wins).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    tuner = _tuner(cfg, rd, _trainable(cfg, context), points, max(budgets.values()), resume)
    grid = tuner.fit()
    return _finish(cfg, rd, grid, points, budgets, sequences, missing, resume, len(validation))


def _finish(cfg: RunConfig, rd: RunDir, grid, points, budgets, sequences, missing, resumed, n_validation) -> Manifest:
    sweep = cfg.sweep
    by_id = {p["id"]: p for p in points}
    rows = []
    for result in grid:
        point = (result.config or {}).get("point") or {}
        if point.get("id") in by_id:
            rows.append(outputs.trial_row(result, by_id[point["id"]], budgets[point["id"]], sweep.objective, rd))
    rows.sort(key=lambda r: r["point_id"])
    if not rows or all(r["status"] == "error" for r in rows):
        first = next((r["error"] for r in rows if r["error"]), "no trial reported")
        raise RuntimeError(f"sweep: every trial failed (first error: {first})")
    written = outputs.write_table(rd, rows)
    best = outputs.best_row(rows, sweep.mode)
    written.append(outputs.plot(rd, rows, list(sweep.sources), sweep.objective, best))
    metrics: dict[str, Any] = {
        "objective": sweep.objective,
        "mode": sweep.mode,
        "resumed": resumed,
        "missing_sources": missing,
        "sequences": sequences,
        "selection_split": VALIDATION,
        "validation_tasks": n_validation,
        "trials": rows,
    }
    if best is not None:
        point = by_id[best["point_id"]]
        steps = None
        if point.get("passes") is not None:
            rows_used = sum(n for s, n in sequences.items() if point["mixture"].get(s, 0) > 0)
            steps = max(1, math.ceil(point["passes"] * rows_used / cfg.pretrain.global_batch_size))
        rd.write_text("sweep/best.yaml", outputs.best_overlay(best, point, sweep.objective, sweep.mode, steps))
        written.append("sweep/best.yaml")
        metrics["best"] = {"trial_id": best["trial_id"], "point": point, "objective": best["objective"]}
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("completed", "stopped_early", "error")}
    headline = {
        "trials": len(rows),
        "stopped_early": counts["stopped_early"],
        "best_objective": best["objective"] if best else None,
        "best_mixture": " ".join(f"{k}={v:.2f}" for k, v in by_id[best["point_id"]]["mixture"].items())
        if best
        else None,
    }
    return Manifest(
        stage="sweep",
        rows={"trials": len(rows), **counts},
        metrics=metrics,
        headline=headline,
        outputs=written + [SPACE_FILE, f"sweep/{EXPERIMENT}", "sweep/trials"],
    )
