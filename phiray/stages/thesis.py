"""thesis: phi-1's thesis at this run's scale, over seeds: phiray's data vs the unfiltered control.

For each seed of ``thesis.seeds``, the models of ``thesis.phases`` are scored on ``thesis.benchmarks``
(``validation``: held-out instances of the train families; ``exercises``: the test split, unseen
families) with evaluate's settings. run.seed's models are the pipeline's own (``pretrain/model``,
``control/model``, ``finetune/model``), with evaluate's scores where evaluate scored them; every other seed
re-trains the phases with the pipeline's settings, only ``run.seed`` changed (initialisation, data order,
dropout), on the same tokenized data, under ``thesis/seed-<N>/<phase>/`` (grow and finetune start from
that seed's own pretrain, as the pipeline chains them). A phase whose ``done.json`` holds the same key
(the phase stage's config hash at that seed, the tokenize run it read, the key of the model it started
from) is not re-trained, so a killed stage resumes phase by phase and more seeds re-train only the new ones.

Writes ``thesis/results.json`` (every seed's scores and training facts, and the table) and per seed
``thesis/seed-<N>/evaluate/models/<model>/<bench>.tasks.jsonl``; the manifest's ``metrics.table`` and
``metrics.comparisons`` are the report's thesis section.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from typing import Any

from phiray.config import THESIS_PHASES, RunConfig
from phiray.rundir import Manifest, RunDir
from phiray.sandbox.placement import sandbox_for
from phiray.stages import STAGE_BY_NAME
from phiray.stages.evaluate import load_benchmarks, score_model
from phiray.train.driver import fit_phase, phase_manifest

log = logging.getLogger("phiray")

EVALUATED = ("pretrain", "control", "finetune")  # grow's model is an intermediate: finetune starts from it
SEED_DIR = "thesis/seed-{seed}"
GOAL_VALIDATION_PASS = 0.10  # issue 18: the finetuned model should solve >= 10% of the validation split


def phases_of(cfg: RunConfig) -> list[str]:
    """The phases re-trained per seed, in pipeline order (control only when the run trains a control)."""
    return [p for p in THESIS_PHASES if p in cfg.thesis.phases and (p != "control" or cfg.control.enabled)]


def models_of(cfg: RunConfig) -> list[str]:
    return [p for p in phases_of(cfg) if p in EVALUATED]


def seed_config(cfg: RunConfig, seed: int) -> RunConfig:
    """The run's config at ``seed``. Its phases validate only at their last step: the table reads the final
    validation losses, and validation changes no weight (no gradient, no sampler state), so the models are
    the ones the pipeline's own settings train at that seed, minus the intermediate evaluation passes."""
    out = cfg.model_copy(deep=True)
    out.run.seed = seed
    for phase in phases_of(out):
        section = out.section(phase)
        section.eval_every = section.max_steps
    return out


def _start(phase: str, phases: list[str]) -> str | None:
    """The phase whose model ``phase`` starts from (None: a fresh initialisation)."""
    if phase == "grow":
        return "pretrain"
    if phase == "finetune":
        return "grow" if "grow" in phases else "pretrain"
    return None


def phase_facts(manifest: Manifest, cfg: RunConfig, phase: str) -> dict[str, Any]:
    """Steps, tokens, size and final validation losses of a trained phase (from its stage manifest)."""
    vals = manifest.metrics.get("curve", {}).get("val", [])
    last = vals[-1] if vals else {}
    steps = int(manifest.rows.get("steps", 0))
    return {
        "steps": steps,
        "tokens": steps * cfg.section(phase).global_batch_size * cfg.tokenize.seq_len,
        "params_non_embedding": manifest.metrics.get("n_params_non_embedding"),
        "val": {k: v for k, v in last.items() if k.startswith("val_loss/")},
    }


def _phase_key(scfg: RunConfig, phase: str, tokenize_run: str, upstream: str | None) -> str:
    blob = json.dumps([STAGE_BY_NAME[phase].config_hash(scfg), tokenize_run, upstream])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _train(scfg: RunConfig, rd: RunDir, phase: str, stage: str, init_from: str | None) -> Manifest:
    from phiray.stages.grow import grow_phase

    rd.remove(stage, "model")
    if phase == "grow":
        return grow_phase(scfg, rd, stage=stage, pretrained=init_from)
    return phase_manifest(stage, fit_phase(scfg, rd, phase, init_from=init_from, stage=stage))


def train_seed(cfg: RunConfig, rd: RunDir, seed: int) -> dict[str, dict[str, Any]]:
    """Train ``seed``'s phases under ``thesis/seed-<seed>/`` (those already trained with the same key are
    kept); returns {phase: facts}."""
    scfg, prefix, phases = seed_config(cfg, seed), SEED_DIR.format(seed=seed), phases_of(cfg)
    tokenize = rd.read_manifest("tokenize")
    if tokenize is None:
        raise RuntimeError("thesis needs the tokenize stage's outputs: run tokenize first")
    keys: dict[str, str] = {}
    out: dict[str, dict[str, Any]] = {}
    for phase in phases:
        start = _start(phase, phases)
        keys[phase] = key = _phase_key(scfg, phase, tokenize.run_id, keys.get(start) if start else None)
        marker, stage = f"{prefix}/{phase}/done.json", f"{prefix}/{phase}"
        if rd.exists(marker) and rd.read_json(marker).get("key") == key and rd.exists(stage, "model", "config.json"):
            log.info("thesis: seed %d %s already trained; kept", seed, phase)
            out[phase] = rd.read_json(marker) | {"reused": True}
            continue
        log.info("thesis: seed %d: training %s", seed, phase)
        t0 = time.perf_counter()
        manifest = _train(scfg, rd, phase, stage, f"{prefix}/{start}/model" if start else None)
        facts = {
            "key": key,
            "seed": seed,
            "phase": phase,
            "wall_time_s": round(time.perf_counter() - t0, 1),
            **phase_facts(manifest, cfg, phase),
        }
        rd.write_json(marker, facts)
        out[phase] = facts | {"reused": False}
    return out


def main_seed_facts(cfg: RunConfig, rd: RunDir) -> dict[str, dict[str, Any]]:
    """run.seed's phases: the pipeline's own models, facts from their stage manifests."""
    out = {}
    for phase in phases_of(cfg):
        manifest = rd.read_manifest(phase)
        if manifest is None or not rd.exists(phase, "model", "config.json"):
            raise RuntimeError(f"thesis: run.seed's {phase} model is the pipeline's {phase}/model: run {phase} first")
        out[phase] = {
            "seed": cfg.run.seed,
            "phase": phase,
            "wall_time_s": manifest.wall_time_s,
            "reused": True,
            **phase_facts(manifest, cfg, phase),
        }
    return out


def _evaluated_by_pipeline(rd: RunDir) -> dict[str, dict[str, Any]]:
    if rd.read_manifest("evaluate") is None or not rd.exists("evaluate/results.json"):
        return {}
    return rd.read_json("evaluate/results.json").get("results", {})


def score_seed(cfg: RunConfig, rd: RunDir, seed: int, benchmarks: dict, sandbox) -> dict[str, dict[str, Any]]:
    """{model: {bench: summary}} for ``seed``'s models (run.seed: evaluate's numbers where it has them)."""
    scfg, prefix = seed_config(cfg, seed), SEED_DIR.format(seed=seed)
    main = seed == cfg.run.seed
    known = _evaluated_by_pipeline(rd) if main else {}
    out = {}
    for model in models_of(cfg):
        have = {b: known[model][b] for b in benchmarks if b in known.get(model, {})}
        todo = {b: tasks for b, tasks in benchmarks.items() if b not in have}
        if todo:
            path = model if main else f"{prefix}/{model}"
            # run.seed's cards belong to the pipeline's stages: only evaluate writes into them
            have |= score_model(scfg, rd, path, todo, sandbox, f"{prefix}/evaluate", name=model, update_card=not main)[
                0
            ]
        out[model] = {b: have[b] for b in benchmarks}
    return out


def spread(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, sample standard deviation (0 for one value), min and max of ``values``."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"n": len(values), "mean": mean, "std": std, "min": min(values), "max": max(values)}


def thesis_table(
    seeds: list[int], scores: dict[int, dict], facts: dict[int, dict], k: int, benchmarks: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, comparisons). A row is one (metric, model) with its value per seed and the spread; a
    comparison counts the seeds where phiray's pretrain beats the control on a metric."""
    rows = []
    models = list(scores[seeds[0]])
    for bench in benchmarks:
        for model in models:
            rows.append(_row(f"{bench} pass@{k}", model, {s: scores[s][model][bench].get(f"pass@{k}") for s in seeds}))
    sources = sorted(
        {key for s in seeds for p in ("pretrain", "control") for key in facts[s].get(p, {}).get("val", {})}
    )
    for key in sources:
        for model in ("pretrain", "control"):
            if model in facts[seeds[0]]:
                rows.append(_row(key, model, {s: facts[s][model]["val"].get(key) for s in seeds}))
    comparisons = []
    if "pretrain" in models and "control" in models:
        for bench in benchmarks:
            comparisons.append(_compare(f"{bench} pass@{k}", rows, higher_is_better=True))
        comparisons += [_compare(key, rows, higher_is_better=False) for key in sources]
    return rows, comparisons


def _row(metric: str, model: str, per_seed: dict[int, float | None]) -> dict[str, Any]:
    values = [v for v in per_seed.values() if v is not None]
    return {"metric": metric, "model": model, "per_seed": {str(s): v for s, v in per_seed.items()}} | spread(values)


def _compare(metric: str, rows: list[dict[str, Any]], higher_is_better: bool) -> dict[str, Any]:
    ours = next(r for r in rows if r["metric"] == metric and r["model"] == "pretrain")["per_seed"]
    control = next(r for r in rows if r["metric"] == metric and r["model"] == "control")["per_seed"]
    pairs = [(ours[s], control[s]) for s in ours if ours[s] is not None and control.get(s) is not None]
    gaps = [(a - b) if higher_is_better else (b - a) for a, b in pairs]  # > 0: phiray's data is better
    return {
        "metric": metric,
        "better": "higher" if higher_is_better else "lower",
        "of": len(pairs),
        "phiray_better": sum(g > 0 for g in gaps),
        "ties": sum(g == 0 for g in gaps),
        "gap": spread(gaps),
    }


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Score ``thesis.phases``' models of every seed on ``thesis.benchmarks``, training the seeds not yet trained."""
    if not cfg.control.enabled:
        return Manifest(stage="thesis", headline={"skipped": "control.enabled=false: no control to compare with"})
    seeds = cfg.thesis.seed_list(cfg.run.seed)
    if cfg.run.seed not in seeds:
        raise ValueError(f"thesis.seeds {seeds} must include run.seed ({cfg.run.seed}): its models are the pipeline's")
    benchmarks = load_benchmarks(cfg, rd, list(cfg.thesis.benchmarks))
    sandbox = sandbox_for(cfg.sandbox)
    facts, scores = {}, {}
    for seed in seeds:
        facts[seed] = main_seed_facts(cfg, rd) if seed == cfg.run.seed else train_seed(cfg, rd, seed)
        scores[seed] = score_seed(cfg, rd, seed, benchmarks, sandbox)
    k = cfg.evaluate.k[0]
    rows, comparisons = thesis_table(seeds, scores, facts, k, list(cfg.thesis.benchmarks))
    goal = _goal(rows, k, rd.read_manifest("evaluate"))
    metrics = {
        "seeds": seeds,
        "k": k,
        "table": rows,
        "comparisons": comparisons,
        "goal": goal,
        "tasks": {b: len(t) for b, t in benchmarks.items()},
        "budget": {
            p: {x: facts[cfg.run.seed][p].get(x) for x in ("steps", "tokens", "params_non_embedding")}
            for p in facts[cfg.run.seed]
        },
        "training": {
            str(s): {p: {x: f.get(x) for x in ("wall_time_s", "reused", "steps")} for p, f in facts[s].items()}
            for s in seeds
        },
    }
    rd.write_json(
        "thesis/results.json",
        metrics | {"scores": {str(s): v for s, v in scores.items()}, "facts": {str(s): v for s, v in facts.items()}},
    )
    headline = {"seeds": len(seeds)} | {
        f"{r['model']}/{r['metric'].split()[0]}": round(r["mean"], 4)
        for r in rows
        if "pass@" in r["metric"] and r["mean"] is not None
    }
    trained = sum(not f.get("reused") for s in seeds for f in facts[s].values())
    return Manifest(
        stage="thesis",
        rows={
            "seeds": len(seeds),
            "phases_trained": trained,
            "phases_reused": sum(len(facts[s]) for s in seeds) - trained,
        },
        metrics=metrics,
        headline=headline,
        outputs=["thesis/results.json"],
    )


def _goal(rows: list[dict[str, Any]], k: int, evaluate: Manifest | None) -> dict[str, Any]:
    """Whether the finetuned model solves >= 10% of the validation split: the mean over the seeds when
    finetune is one of thesis.phases, else run.seed's own finetune as evaluate scored it (one seed)."""
    metric = f"validation pass@{k}"
    row = next((r for r in rows if r["model"] == "finetune" and r["metric"] == metric), None)
    if row is None:
        value = (evaluate.metrics if evaluate else {}).get(f"finetune/validation/pass@{k}")
        row = {"n": 0 if value is None else 1, "mean": value}
    return {
        "metric": f"finetune {metric}",
        "target": GOAL_VALIDATION_PASS,
        "mean": row["mean"],
        "seeds": row["n"],
        "met": None if row["mean"] is None else row["mean"] >= GOAL_VALIDATION_PASS,
    }
