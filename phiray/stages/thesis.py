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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from phiray.config import THESIS_PHASES, RunConfig
from phiray.evals.models import load_benchmarks, score_model
from phiray.rundir import Manifest, RunDir
from phiray.sandbox.placement import sandbox_for
from phiray.stages import STAGE_BY_NAME
from phiray.train.driver import finish_fit, fit_phase, fit_phase_task, phase_manifest

log = logging.getLogger("phiray")

EVALUATED = ("pretrain", "control", "finetune")  # grow's model is an intermediate: finetune starts from it
SEED_DIR = "thesis/seed-{seed}"
GOAL_VALIDATION_PASS = 0.20  # issue 27: the finetuned model should solve >= 20% of the validation split


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


# phi-1's ablations: the pretraining mixture each trains on instead of pretrain's (same settings otherwise)
ABLATIONS = {"no_textbooks": {"code": 1.0}, "no_filter": {"unfiltered": 1.0, "textbooks": 1.0}}
FT = "_ft"  # a compared pretraining finetuned on the exercises: "<model>_ft"
UNPRUNED = "pretrain_ft_unpruned"  # with similarity.prune_tau: phiray's finetune on every exercise (no §5 pruning)


def _phase_key(scfg: RunConfig, phase: str, tokenize_run: str, upstream: str | None, mixture=None) -> str:
    blob = json.dumps([STAGE_BY_NAME[phase].config_hash(scfg), tokenize_run, upstream, mixture], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def bases_of(cfg: RunConfig) -> list[str]:
    """The compared pretrainings: pretrain, control and each ablation."""
    return ["pretrain", "control", *cfg.thesis.ablations]


def jobs_of(cfg: RunConfig, main: bool) -> list[dict[str, Any]]:
    """What a seed trains, in dependency order: {name, phase, start (the job whose model it starts from),
    mixture (None: the phase's own)}. run.seed's pipeline phases are the pipeline's, not jobs."""
    phases = phases_of(cfg)
    jobs = [] if main else [{"name": p, "phase": p, "start": _start(p, phases), "mixture": None} for p in phases]
    jobs += [{"name": a, "phase": "pretrain", "start": None, "mixture": ABLATIONS[a]} for a in cfg.thesis.ablations]
    if cfg.thesis.finetune_arms:
        jobs += [{"name": b + FT, "phase": "finetune", "start": b, "mixture": None} for b in bases_of(cfg)]
        if cfg.similarity.prune_tau is not None:  # phi-1 §5: the same finetune without the pruning
            jobs.append(
                {"name": UNPRUNED, "phase": "finetune", "start": "pretrain", "mixture": {"exercises_full_sft": 1.0}}
            )
    return jobs


def _train(scfg: RunConfig, rd: RunDir, job: dict[str, Any], stage: str, init_from: str | None) -> Manifest:
    from phiray.train.grow import grow_phase

    rd.remove(stage, "model")
    if job["phase"] == "grow":
        return grow_phase(scfg, rd, stage=stage, pretrained=init_from)
    info = fit_phase(scfg, rd, job["phase"], init_from=init_from, stage=stage, mixture=job["mixture"])
    return phase_manifest(stage, info)


def _upstream_key(rd: RunDir, name: str, keys: dict[str, str]) -> str:
    """The key of the model a job starts from: a thesis job's, or the pipeline stage's run id (run.seed)."""
    if name in keys:
        return keys[name]
    manifest = rd.read_manifest(name)
    return manifest.run_id if manifest is not None else name


def train_seed(cfg: RunConfig, rd: RunDir, seed: int) -> dict[str, dict[str, Any]]:
    """Train ``seed``'s jobs under ``thesis/seed-<seed>/`` (those already trained with the same key are
    kept); returns {name: facts}. Jobs whose start is trained go together: side by side as Ray tasks with
    ``thesis.trainer=process``, one Ray Train fit after another with ``ray_train``."""
    scfg, prefix = seed_config(cfg, seed), SEED_DIR.format(seed=seed)
    main = seed == cfg.run.seed
    tokenize = rd.read_manifest("tokenize")
    if tokenize is None:
        raise RuntimeError("thesis needs the tokenize stage's outputs: run tokenize first")
    out: dict[str, dict[str, Any]] = main_seed_facts(cfg, rd) if main else {}
    keys: dict[str, str] = {}
    pending = jobs_of(cfg, main)
    while pending:
        ready = [j for j in pending if j["start"] is None or j["start"] in out]
        if not ready:
            raise RuntimeError(f"thesis: jobs {[j['name'] for j in pending]} start from models nothing trains")
        pending = [j for j in pending if j not in ready]
        todo = []
        for job in ready:
            start = job["start"]
            upstream = _upstream_key(rd, start, keys) if start else None
            keys[job["name"]] = key = _phase_key(scfg, job["phase"], tokenize.run_id, upstream, job["mixture"])
            stage = f"{prefix}/{job['name']}"
            marker = f"{stage}/done.json"
            if (
                rd.exists(marker)
                and rd.read_json(marker).get("key") == key
                and rd.exists(stage, "model", "config.json")
            ):
                log.info("thesis: seed %d %s already trained; kept", seed, job["name"])
                out[job["name"]] = rd.read_json(marker) | {"reused": True}
                continue
            init = (
                None
                if start is None
                else (f"{start}/model" if main and start not in keys else f"{prefix}/{start}/model")
            )
            todo.append((job, key, stage, init))
        for job, key, stage, manifest, wall in _run_jobs(scfg, rd, todo, seed):
            facts = {"key": key, "seed": seed, "phase": job["name"], "wall_time_s": wall}
            facts |= phase_facts(manifest, cfg, job["phase"])
            rd.write_json(f"{stage}/done.json", facts)
            out[job["name"]] = facts | {"reused": False}
    return out


def _run_jobs(scfg: RunConfig, rd: RunDir, todo: list, seed: int):
    """(job, key, stage, manifest, wall seconds) of each job of ``todo`` once trained."""
    if scfg.thesis.trainer == "process":
        import ray

        t0 = time.perf_counter()
        started = []
        for job, key, stage, init in todo:
            if job["phase"] == "grow":  # grow reshapes weights first: its own path
                started.append((job, key, stage, None, _train(scfg, rd, job, stage, init)))
                continue
            rd.remove(stage, "model")
            log.info("thesis: seed %d: training %s (one process)", seed, job["name"])
            spec, ref = fit_phase_task(scfg, rd, job["phase"], init, stage=stage, mixture=job["mixture"])
            started.append((job, key, stage, (spec, ref), None))
        for job, key, stage, pair, manifest in started:
            if pair is not None:
                ray.get(pair[1])
                manifest = phase_manifest(stage, finish_fit(scfg, rd, pair[0]))
            yield job, key, stage, manifest, round(time.perf_counter() - t0, 1)
        return
    for job, key, stage, init in todo:
        log.info("thesis: seed %d: training %s", seed, job["name"])
        t0 = time.perf_counter()
        manifest = _train(scfg, rd, job, stage, init)
        yield job, key, stage, manifest, round(time.perf_counter() - t0, 1)


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


def thesis_benchmarks(cfg: RunConfig, rd: RunDir) -> dict[str, list]:
    """thesis.benchmarks' tasks at thesis.limit (None: every task; 'evaluate': evaluate.limit)."""
    limit = cfg.evaluate.limit if cfg.thesis.limit == "evaluate" else cfg.thesis.limit
    scoped = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"limit": limit})})
    return load_benchmarks(scoped, rd, list(cfg.thesis.benchmarks))


def _same_tasks(rd: RunDir, model: str, bench: str, tasks: list) -> bool:
    """Whether evaluate scored ``model`` on exactly these tasks (its per-task file), so its numbers can stand."""
    return set(_task_passes(rd, f"evaluate/models/{model}/{bench}.tasks.jsonl")) == {str(t.task_id) for t in tasks}


def compared_models(cfg: RunConfig) -> list[str]:
    """Every model the table scores: the pipeline phases', each ablation's and each finetuned arm's."""
    if not cfg.thesis.finetune_arms:
        return models_of(cfg) + list(cfg.thesis.ablations)
    # finetuned arms: the ablations are compared finetuned (their pretrained models are a step, not scored)
    ft = [m + FT for m in bases_of(cfg)] + ([UNPRUNED] if cfg.similarity.prune_tau is not None else [])
    pipeline = [m for m in models_of(cfg) if cfg.thesis.score_pretrained or m not in bases_of(cfg)]
    return pipeline + ft


def score_seed(
    cfg: RunConfig, rd: RunDir, seed: int, benchmarks: dict, sandbox
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, float]]]]:
    """({model: {bench: summary}}, {model: {bench: {task_id: pass@1}}}) for ``seed``'s models (run.seed:
    evaluate's numbers where it has them)."""
    scfg, prefix = seed_config(cfg, seed), SEED_DIR.format(seed=seed)
    main = seed == cfg.run.seed
    known = _evaluated_by_pipeline(rd) if main else {}
    pipeline = set(models_of(cfg)) if main else set()
    out, per_task = {}, {}

    def score(model: str) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
        have = {
            b: known[model][b]
            for b, tasks in benchmarks.items()
            if b in known.get(model, {}) and _same_tasks(rd, model, b, tasks)
        }
        todo = {b: tasks for b, tasks in benchmarks.items() if b not in have}
        if todo:
            path = model if model in pipeline else f"{prefix}/{model}"
            # run.seed's cards belong to the pipeline's stages: only evaluate writes into them
            have |= score_model(
                scfg, rd, path, todo, sandbox, f"{prefix}/evaluate", name=model, update_card=model not in pipeline
            )[0]
        passes = {
            b: _task_passes(
                rd, f"{'evaluate' if b not in todo else prefix + '/evaluate'}/models/{model}/{b}.tasks.jsonl"
            )
            for b in benchmarks
        }
        return {b: have[b] for b in benchmarks}, passes

    models = compared_models(cfg)
    with ThreadPoolExecutor(max_workers=cfg.thesis.score_concurrency) as pool:
        for model, (scores, passes) in zip(models, pool.map(score, models)):
            out[model], per_task[model] = scores, passes
    return out, per_task


def _task_passes(rd: RunDir, path: str) -> dict[str, float]:
    """{task_id: pass@1} from a per-task results file (empty when there is none)."""
    if not rd.exists(path):
        return {}
    rows = [json.loads(line) for line in rd.read_text(path).splitlines() if line.strip()]
    return {str(r["task_id"]): float(r["passed"]) / max(1, int(r["n"])) for r in rows}


def paired_bootstrap(diffs: list[float], resamples: int, seed: int) -> dict[str, float | int | None]:
    """Mean of the paired differences (ours - theirs, one per (seed, task)) with a 95% percentile interval
    and the one-sided p-value (the share of resampled means <= 0) from ``resamples`` resamples."""
    if not diffs:
        return {"pairs": 0, "mean": None, "ci_low": None, "ci_high": None, "p_value": None}
    import numpy as np

    values = np.asarray(diffs, dtype=float)
    out = {"pairs": len(diffs), "mean": float(values.mean()), "ci_low": None, "ci_high": None, "p_value": None}
    if resamples > 0:
        rng = np.random.default_rng(seed)
        means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
        out |= {
            "ci_low": float(np.quantile(means, 0.025)),
            "ci_high": float(np.quantile(means, 0.975)),
            "p_value": float((means <= 0).mean()),
        }
    return out


def comparison_pairs(models: list[str]) -> list[tuple[str, str]]:
    """(ours, theirs) pairs the table compares: phiray vs the control, each ablation and no finetune."""
    have = set(models)
    pairs = [("pretrain", "control")]
    if "pretrain" + FT in have:
        pairs += [("pretrain" + FT, "control" + FT), ("pretrain" + FT, "pretrain")]
        pairs += [("pretrain" + FT, a + FT) for a in ABLATIONS if a + FT in have] + [("pretrain" + FT, UNPRUNED)]
    else:
        pairs += [("pretrain", a) for a in ABLATIONS if a in have]
    return [(a, b) for a, b in pairs if a in have and b in have]


def spread(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, sample standard deviation (0 for one value), min and max of ``values``."""
    if not values:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"n": len(values), "mean": mean, "std": std, "min": min(values), "max": max(values)}


def thesis_table(
    seeds: list[int],
    scores: dict[int, dict],
    facts: dict[int, dict],
    k: int,
    benchmarks: list[str],
    per_task: dict[int, dict] | None = None,
    resamples: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, comparisons). A row is one (metric, model) with its value per seed and the spread; a
    comparison counts the seeds where phiray's model beats the other on a metric and, for pass@1 with
    per-task results, a paired bootstrap over (seed, task) pairs."""
    rows = []
    models = list(scores[seeds[0]])
    for bench in benchmarks:
        for model in models:
            rows.append(_row(f"{bench} pass@{k}", model, {s: scores[s][model][bench].get(f"pass@{k}") for s in seeds}))
    # the pretrained models' validation losses (from training), scored or not
    trained = [m for m in facts[seeds[0]] if not m.endswith(FT) and m not in ("finetune", "grow", UNPRUNED)]
    sources = sorted({key for s in seeds for p in trained for key in facts[s].get(p, {}).get("val", {})})
    for key in sources:
        for model in trained:
            rows.append(_row(key, model, {s: facts[s][model]["val"].get(key) for s in seeds}))
    comparisons = []
    for ours, theirs in comparison_pairs(list(dict.fromkeys(models + trained))):
        for bench in benchmarks if ours in models and theirs in models else ():
            diffs = []
            if per_task and k == 1:
                for s in seeds:
                    a, b = per_task[s][ours][bench], per_task[s][theirs][bench]
                    diffs += [a[t] - b[t] for t in sorted(a) if t in b]
            comparisons.append(
                _compare(f"{bench} pass@{k}", rows, ours, theirs, True)
                | ({"bootstrap": paired_bootstrap(diffs, resamples, seeds[0])} if diffs else {})
            )
        if ours in trained and theirs in trained:
            comparisons += [_compare(key, rows, ours, theirs, False) for key in sources]
    return rows, comparisons


def _row(metric: str, model: str, per_seed: dict[int, float | None]) -> dict[str, Any]:
    values = [v for v in per_seed.values() if v is not None]
    return {"metric": metric, "model": model, "per_seed": {str(s): v for s, v in per_seed.items()}} | spread(values)


def _compare(
    metric: str, rows: list[dict[str, Any]], ours_model: str, theirs_model: str, higher_is_better: bool
) -> dict[str, Any]:
    ours = next(r for r in rows if r["metric"] == metric and r["model"] == ours_model)["per_seed"]
    control = next(r for r in rows if r["metric"] == metric and r["model"] == theirs_model)["per_seed"]
    pairs = [(ours[s], control[s]) for s in ours if ours[s] is not None and control.get(s) is not None]
    gaps = [(a - b) if higher_is_better else (b - a) for a, b in pairs]  # > 0: phiray's data is better
    return {
        "metric": metric,
        "ours": ours_model,
        "theirs": theirs_model,
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
    benchmarks = thesis_benchmarks(cfg, rd)
    sandbox = sandbox_for(cfg.sandbox)
    facts, scores, per_task = {}, {}, {}
    for seed in seeds:
        facts[seed] = train_seed(cfg, rd, seed)
        scores[seed], per_task[seed] = score_seed(cfg, rd, seed, benchmarks, sandbox)
    k = cfg.evaluate.k[0]
    rows, comparisons = thesis_table(
        seeds, scores, facts, k, list(cfg.thesis.benchmarks), per_task, cfg.thesis.bootstrap
    )
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
