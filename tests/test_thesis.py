"""The thesis over seeds (issue 18): config, the table and its spread, the stage on real checkpoints and the
real sandbox (seeds already trained are reused, never re-trained), and the report's section."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contract_checks import contract_problems
from serve_fixtures import build_tiny_checkpoint

from phiray.config import ConfigError, load_config
from phiray.rundir import Manifest, RunDir
from phiray.stages import thesis

EXERCISES = [
    {
        "id": f"ex{i}",
        "prompt": f'def double_{i}(x: int) -> int:\n    """Return twice x."""\n',
        "solution": "    return 2 * x\n",
        "tests": f"assert double_{i}(3) == 6\n",
        "entry_point": f"double_{i}",
    }
    for i in range(3)
]


def test_seeds_count_or_list_and_the_phase_rules():
    cfg = load_config("tiny", overrides=["run.seed=7", "thesis.seeds=3"])
    assert cfg.thesis.seed_list(7) == [7, 8, 9]
    cfg = load_config("tiny", overrides=["run.seed=7", "thesis.seeds=[11, 7, 3]"])
    assert cfg.thesis.seed_list(7) == [7, 11, 3]  # run.seed first: its models are the pipeline's
    with pytest.raises(ConfigError, match="compares pretrain with control"):
        load_config("tiny", overrides=["thesis.phases=[pretrain]"])
    with pytest.raises(ConfigError, match="distinct"):
        load_config("tiny", overrides=["thesis.seeds=[1, 1]"])
    with pytest.raises(ConfigError, match="needs its own grow"):
        load_config("tiny", overrides=["thesis.phases=[pretrain, control, finetune]"])
    cfg = load_config("tiny", overrides=["thesis.phases=[pretrain, control, grow, finetune]"])
    assert thesis.models_of(cfg) == ["pretrain", "finetune", "control"]
    assert thesis._start("finetune", thesis.phases_of(cfg)) == "grow"


def test_spread_is_the_sample_std_and_range():
    s = thesis.spread([0.1, 0.2, 0.3])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.2) and s["std"] == pytest.approx(0.1)
    assert (s["min"], s["max"]) == (0.1, 0.3)
    assert thesis.spread([0.5])["std"] == 0.0 and thesis.spread([])["mean"] is None


def test_table_counts_the_seeds_where_phiray_beats_the_control():
    seeds = [1, 2, 3]
    scores = {
        s: {"pretrain": {"validation": {"pass@1": p}}, "control": {"validation": {"pass@1": c}}}
        for s, p, c in ((1, 0.2, 0.0), (2, 0.1, 0.1), (3, 0.3, 0.1))
    }
    facts = {
        s: {"pretrain": {"val": {"val_loss/textbooks": 3.0 + s}}, "control": {"val": {"val_loss/textbooks": 6.5}}}
        for s in seeds
    }
    rows, comparisons = thesis.thesis_table(seeds, scores, facts, 1, ["validation"])
    by = {(r["metric"], r["model"]): r for r in rows}
    assert by[("validation pass@1", "pretrain")]["per_seed"] == {"1": 0.2, "2": 0.1, "3": 0.3}
    assert by[("val_loss/textbooks", "pretrain")]["mean"] == pytest.approx(5.0)
    passes, loss = comparisons
    assert (passes["phiray_better"], passes["ties"], passes["of"]) == (2, 1, 3)
    assert passes["gap"]["mean"] == pytest.approx(0.4 / 3)
    assert loss["better"] == "lower" and loss["phiray_better"] == 3 and loss["gap"]["mean"] == pytest.approx(1.5)


def _trained(stage: str, tmp, val: float) -> dict:
    build_tiny_checkpoint(tmp / stage / "model")
    curve = {"curve": {"val": [{"step": 10, "val_loss": val, "val_loss/textbooks": val}]}, "n_params_non_embedding": 1}
    return {"rows": {"steps": 10}, "metrics": curve}


def _pipeline_run(tmp, cfg) -> RunDir:
    """A run dir as the pipeline leaves it before thesis: tokenize, pretrain and control (tiny real
    checkpoints), evaluate's results (pretrain's numbers planted, to prove they are reused), the splits."""
    rd = RunDir(tmp)
    for split, rows in (("heldout", EXERCISES), ("validation", EXERCISES[:2])):
        (tmp / "synthesize" / split).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp / "synthesize" / split / "part-0.parquet")
    rd.write_manifest(Manifest(stage="tokenize"))
    for stage, val in (("pretrain", 4.0), ("control", 6.0)):
        rd.write_manifest(Manifest(stage=stage, wall_time_s=1.0, **_trained(stage, tmp, val)))
    rd.write_json("evaluate/results.json", {"results": {"pretrain": {"validation": {"pass@1": 0.5}}}})
    tasks = thesis.thesis_benchmarks(cfg, rd)["validation"]  # evaluate scored these tasks: the numbers can stand
    rd.write_text(
        "evaluate/models/pretrain/validation.tasks.jsonl",
        "".join(json.dumps({"task_id": t.task_id, "n": 1, "passed": i % 2}) + "\n" for i, t in enumerate(tasks)),
    )
    rd.write_manifest(Manifest(stage="evaluate"))
    return rd


def _already_trained(rd: RunDir, cfg, seed: int, tmp) -> None:
    """thesis/seed-<seed>/ as an earlier thesis run left it: models + done.json with the current keys."""
    scfg, tokenize = thesis.seed_config(cfg, seed), rd.read_manifest("tokenize").run_id
    for phase, val in (("pretrain", 4.5), ("control", 5.5)):
        build_tiny_checkpoint(tmp / "thesis" / f"seed-{seed}" / phase / "model", seed=seed)
        facts = {
            "key": thesis._phase_key(scfg, phase, tokenize, None),
            "seed": seed,
            "phase": phase,
            "steps": 10,
            "tokens": 40960,
            "params_non_embedding": 1,
            "val": {"val_loss/textbooks": val + seed / 1000},
        }
        rd.write_json(f"thesis/seed-{seed}/{phase}/done.json", facts)


def test_stage_scores_every_seed_and_reuses_what_is_trained(ray_session, tmp_path):
    from phiray.pipeline import run_stage
    from phiray.stages import STAGE_BY_NAME

    cfg = load_config(
        "tiny",
        overrides=[
            "run.stages=[tokenize, pretrain, control, evaluate, thesis]",
            "run.seed=5",
            "thesis.seeds=3",
            "thesis.finetune_arms=false",
            "thesis.benchmarks=[validation, exercises]",
            "evaluate.max_new_tokens=8",
            "evaluate.limit=2",
            "thesis.limit=evaluate",
        ],
    )
    rd = _pipeline_run(tmp_path / "run", cfg)
    for seed in (6, 7):
        _already_trained(rd, cfg, seed, tmp_path / "run")
    manifest = run_stage(STAGE_BY_NAME["thesis"], cfg, rd, STAGE_BY_NAME)
    assert manifest.rows == {"seeds": 3, "phases_trained": 0, "phases_reused": 6}
    rows = {(r["metric"], r["model"]): r for r in manifest.metrics["table"]}
    valid = rows[("validation pass@1", "pretrain")]
    assert valid["per_seed"]["5"] == 0.5  # evaluate's number for run.seed; the others scored in the sandbox
    assert set(valid["per_seed"]) == {"5", "6", "7"} and valid["n"] == 3
    assert rows[("exercises pass@1", "control")]["n"] == 3
    assert rows[("val_loss/textbooks", "control")]["per_seed"] == {
        "5": 6.0,
        "6": pytest.approx(5.506),
        "7": pytest.approx(5.507),
    }
    for seed in (6, 7):  # each other seed's per-task verdicts, from the real sandbox
        tasks = [
            json.loads(line)
            for line in rd.read_text(f"thesis/seed-{seed}/evaluate/models/control/validation.tasks.jsonl").splitlines()
        ]
        assert len(tasks) == 2 and all("results" in t for t in tasks)
    # run.seed: pretrain's validation came from evaluate; what evaluate did not score is scored here
    assert rd.exists("thesis/seed-5/evaluate/models/pretrain/exercises.tasks.jsonl")
    assert not rd.exists("thesis/seed-5/evaluate/models/pretrain/validation.tasks.jsonl")
    # evaluate's numbers stand only for the very tasks the thesis scores (thesis.limit may differ from evaluate's)
    tasks = thesis.thesis_benchmarks(cfg, rd)["validation"]
    assert thesis._same_tasks(rd, "pretrain", "validation", tasks)
    assert not thesis._same_tasks(rd, "pretrain", "validation", tasks[:1])
    assert manifest.metrics["budget"]["pretrain"]["tokens"] == 10 * 16 * 256
    assert manifest.metrics["goal"]["metric"] == "finetune validation pass@1"
    assert json.loads(rd.read_text("thesis/results.json"))["seeds"] == [5, 6, 7]
    assert not contract_problems(rd, ["thesis"])


def test_report_shows_the_seeds_and_the_spread(tmp_path):
    from test_report import make_run

    from phiray.cli import main

    rd = make_run(tmp_path / "run")
    row = {"metric": "validation pass@1", "model": "pretrain", "per_seed": {"1234": 0.25, "1235": 0.125, "1236": 0.0}}
    control = {"metric": "validation pass@1", "model": "control", "per_seed": {"1234": 0.0, "1235": 0.0, "1236": 0.0}}
    table = [r | thesis.spread(list(r["per_seed"].values())) for r in (row, control)]
    _, comparisons = thesis.thesis_table(
        [1234],
        {1234: {"pretrain": {"validation": {"pass@1": 0.25}}, "control": {"validation": {"pass@1": 0.0}}}},
        {1234: {}},
        1,
        ["validation"],
    )
    goal = {"metric": "finetune validation pass@1", "target": 0.1, "mean": 0.05, "seeds": 3, "met": False}
    rd.finish(
        Manifest(
            stage="thesis",
            metrics={
                "seeds": [1234, 1235, 1236],
                "table": table,
                "comparisons": comparisons,
                "goal": goal,
                "tasks": {"validation": 8},
                "budget": {
                    "pretrain": {"steps": 40, "tokens": 10, "params_non_embedding": 3},
                    "control": {"steps": 40, "tokens": 10, "params_non_embedding": 3},
                },
            },
        ),
        config_hash="x",
        inputs={},
        started_at="t",
        wall_time_s=1.0,
    )
    assert main(["report", str(tmp_path / "run")]) == 0
    md = rd.read_text("report/report.md")
    assert "| metric | model | seed 1234 | seed 1235 | seed 1236 | mean ± std | min – max |" in md
    assert "| validation pass@1 | phiray (pretrain) | 0.25 | 0.125 | 0 | 0.125 ± 0.125 | 0 – 0.25 |" in md
    assert "1 of 1" in md and "Equal budget" in md
    assert "solves 5.0% of the validation split (mean over 3 seeds): below the goal of >= 10%" in md
    assert "One seed (run.seed" not in md


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_thesis_trains_each_seed_and_a_forced_rerun_trains_nothing(ray_session, tmp_path_factory):
    """Real Ray Train fits: run.seed through the pipeline, two more seeds under thesis/seed-<N>/."""
    from train_fixtures import small_config, tokenized_run

    from phiray.pipeline import run_pipeline
    from phiray.stages import STAGES

    rd = tokenized_run(tmp_path_factory.getbasetemp(), "run.name=thesis")  # its own run dir
    for split, rows in (("heldout", EXERCISES), ("validation", EXERCISES[:2])):
        rd.makedirs("synthesize", split)
        pq.write_table(pa.Table.from_pylist(rows), rd.path("synthesize", split, "part-0.parquet"))
    cfg = small_config(
        "run.stages=[tokenize, pretrain, control, evaluate, thesis]",
        "thesis.seeds=3",
        "thesis.finetune_arms=false",
        "thesis.trainer=ray_train",
        "thesis.benchmarks=[validation, exercises]",
        "pretrain.max_steps=6",
        "control.max_steps=6",
        "pretrain.eval_every=3",
        "control.eval_every=3",
        "evaluate.models=[pretrain, control]",
        "evaluate.benchmarks=[validation, exercises]",
        "evaluate.max_new_tokens=8",
        "run.name=thesis",
    )
    states = {s.stage.name: s for s in run_pipeline(STAGES, cfg, rd)}
    manifest = states["thesis"].manifest
    assert manifest.rows == {"seeds": 3, "phases_trained": 4, "phases_reused": 2}
    seeds = [str(s) for s in cfg.thesis.seed_list(cfg.run.seed)]
    losses = {r["model"]: r for r in manifest.metrics["table"] if r["metric"] == "val_loss/textbooks"}
    assert set(losses["pretrain"]["per_seed"]) == set(seeds)
    assert len(set(losses["pretrain"]["per_seed"].values())) == 3  # a different seed trains a different model
    for seed in seeds[1:]:
        card = rd.read_json(f"thesis/seed-{seed}/pretrain/model/model_card.json")
        assert card["seed"] == int(seed) and card["evaluation"]["validation"]["tasks"] == 2
    again = run_pipeline(STAGES, cfg, rd, force={"thesis"})[-1].manifest
    assert again.rows == {"seeds": 3, "phases_trained": 0, "phases_reused": 6}
    assert again.metrics["table"] == manifest.metrics["table"]  # greedy decoding: the same scores


def test_paired_bootstrap_gives_the_gap_its_interval_and_p_value():
    better = thesis.paired_bootstrap([1.0] * 6 + [0.0] * 34, 2000, 0)
    assert better["pairs"] == 40 and better["mean"] == pytest.approx(0.15)
    assert better["ci_low"] >= 0 and better["ci_high"] > better["mean"] and better["p_value"] < 0.01
    mixed = thesis.paired_bootstrap([1.0, -1.0] * 20, 2000, 0)
    assert mixed["ci_low"] < 0 < mixed["ci_high"] and 0.3 < mixed["p_value"] < 0.7
    assert thesis.paired_bootstrap([], 2000, 0)["mean"] is None
    assert thesis.paired_bootstrap([0.5], 0, 0)["ci_low"] is None  # no resamples: the mean only


def test_finetune_arms_ablations_and_pruning_are_jobs_in_dependency_order():
    cfg = load_config(
        "tiny",
        overrides=[
            "thesis.finetune_arms=true",
            "thesis.ablations=[no_textbooks, no_filter]",
            "similarity.prune_tau=0.9",
            "thesis.score_pretrained=true",
        ],
    )
    other = thesis.jobs_of(cfg, main=False)
    assert [j["name"] for j in other] == [
        "pretrain",
        "control",
        "no_textbooks",
        "no_filter",
        "pretrain_ft",
        "control_ft",
        "no_textbooks_ft",
        "no_filter_ft",
        "pretrain_ft_unpruned",
    ]
    by = {j["name"]: j for j in other}
    assert (
        by["no_filter"]["mixture"] == {"unfiltered": 1.0, "textbooks": 1.0} and by["no_filter"]["phase"] == "pretrain"
    )
    assert by["control_ft"]["start"] == "control" and by["control_ft"]["phase"] == "finetune"
    assert by["pretrain_ft_unpruned"]["mixture"] == {"exercises_full_sft": 1.0}
    # run.seed: pretrain and control are the pipeline's models, not jobs
    assert [j["name"] for j in thesis.jobs_of(cfg, main=True)][:2] == ["no_textbooks", "no_filter"]
    models = thesis.compared_models(cfg)
    assert thesis.comparison_pairs(models) == [
        ("pretrain", "control"),
        ("pretrain_ft", "control_ft"),
        ("pretrain_ft", "pretrain"),
        ("pretrain_ft", "no_textbooks_ft"),
        ("pretrain_ft", "no_filter_ft"),
        ("pretrain_ft", "pretrain_ft_unpruned"),
    ]
    # the finetuned arms only (the tiny preset): the pretrained models are not scored
    arms = load_config("tiny", overrides=["thesis.score_pretrained=false"])
    assert thesis.compared_models(arms) == ["pretrain_ft", "control_ft"]
    plain = load_config("tiny", overrides=["thesis.ablations=[no_textbooks]", "thesis.finetune_arms=false"])
    assert thesis.comparison_pairs(thesis.compared_models(plain)) == [
        ("pretrain", "control"),
        ("pretrain", "no_textbooks"),
    ]


def test_table_bootstraps_the_pass_gap_over_seeds_and_tasks():
    seeds = [1, 2]
    tasks = [f"t{i}" for i in range(10)]
    per_task = {
        s: {
            "pretrain_ft": {"validation": {t: float(i < 4) for i, t in enumerate(tasks)}},
            "control_ft": {"validation": {t: float(i < 1) for i, t in enumerate(tasks)}},
        }
        for s in seeds
    }
    scores = {
        s: {m: {"validation": {"pass@1": sum(v["validation"].values()) / 10}} for m, v in per_task[s].items()}
        for s in seeds
    }
    facts = {s: {"pretrain": {"val": {"val_loss": 4.0 + s / 10}}, "control": {"val": {"val_loss": 6.0}}} for s in seeds}
    rows, comparisons = thesis.thesis_table(seeds, scores, facts, 1, ["validation"], per_task, 500)
    loss, c = comparisons  # the pretrained models' validation losses are compared though not scored
    assert (loss["metric"], loss["ours"], loss["phiray_better"]) == ("val_loss", "pretrain", 2)
    assert {(r["metric"], r["model"]) for r in rows} >= {("val_loss", "pretrain"), ("val_loss", "control")}
    assert (c["ours"], c["theirs"], c["phiray_better"], c["of"]) == ("pretrain_ft", "control_ft", 2, 2)
    assert c["bootstrap"]["pairs"] == 20 and c["bootstrap"]["mean"] == pytest.approx(0.3)
    assert c["bootstrap"]["p_value"] < 0.05


def test_a_phase_trains_in_a_ray_task_with_its_card(ray_session, tmp_path_factory):
    """thesis.trainer=process: one phase trained by train_single_process in a Ray task, saved like a fit."""
    from train_fixtures import small_config, tokenized_run

    from phiray.train.driver import finish_fit, fit_phase_task

    rd = tokenized_run(tmp_path_factory.getbasetemp())
    cfg = small_config("pretrain.max_steps=3", "pretrain.eval_every=3", "run.seed=11")
    spec, ref = fit_phase_task(cfg, rd, "pretrain", stage="thesis-task/no_textbooks", mixture={"code": 1.0})
    import ray

    ray.get(ref)
    info = finish_fit(cfg, rd, spec)
    assert info["steps"] == 3 and info["world_size"] == 1 and info["mixture"] == {"code": 1.0}
    assert rd.exists("thesis-task/no_textbooks/model/config.json")
    card = rd.read_json("thesis-task/no_textbooks/model/model_card.json")
    assert card["seed"] == 11
