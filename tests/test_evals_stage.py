"""The `evaluate` stage on a real (tiny, random) checkpoint and real held-out exercises in a run dir."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from contract_checks import contract_problems
from serve_fixtures import build_tiny_checkpoint

from phiray.config import load_config
from phiray.rundir import Manifest, RunDir

EXERCISES = [
    {
        "id": f"ex{i}",
        "prompt": f'def double_{i}(x: int) -> int:\n    """Return twice x."""\n',
        "solution": "    return 2 * x\n",
        "tests": f"assert double_{i}(3) == 6\nassert double_{i}(0) == 0\n",
        "entry_point": f"double_{i}",
    }
    for i in range(3)
]


@pytest.mark.parametrize("placement", ["in-process", "evaluator"])
def test_evaluate_stage_writes_results_and_per_task_files(ray_session, tmp_path, placement):
    from phiray.pipeline import run_stage
    from phiray.stages import STAGE_BY_NAME

    rd = RunDir(tmp_path / "run")
    build_tiny_checkpoint(tmp_path / "run" / "finetune" / "model")
    for split, rows in (("heldout", EXERCISES), ("validation", EXERCISES[:2])):
        (tmp_path / "run" / "synthesize" / split).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "run" / "synthesize" / split / "part-0.parquet")
    rd.write_manifest(Manifest(stage="finetune"))  # upstream done (its model is the tiny checkpoint)
    cfg = load_config(
        preset="tiny",
        overrides=[
            "run.stages=[finetune,evaluate]",
            "evaluate.benchmarks=[exercises,validation]",
            "evaluate.models=[finetune,control]",
            "evaluate.max_new_tokens=8",
            "evaluate.n_samples=2",
            "evaluate.k=[1,2]",
            "evaluate.temperature=0.8",
            *(["sandbox.ray_resources={evaluator: 1}", "sandbox.ray_num_cpus=0.5"] if placement == "evaluator" else []),
        ],
    )
    manifest = run_stage(STAGE_BY_NAME["evaluate"], cfg, rd, STAGE_BY_NAME)
    results = json.loads((tmp_path / "run" / "evaluate" / "results.json").read_text())
    assert results["sandbox_resources"] == ({"evaluator": 1.0} if placement == "evaluator" else {})
    summary = results["results"]["finetune"]["exercises"]
    assert summary["tasks"] == 3 and summary["samples"] == 6 and 0.0 <= summary["pass@1"] <= summary["pass@2"] <= 1
    # the test split once, and the validation split: both reported; control/model is absent
    assert manifest.rows == {"exercises": 3, "validation": 2, "models": 1, "models_skipped": 1}
    assert results["splits"] == {"exercises": "synthesize/heldout", "validation": "synthesize/validation"}
    assert results["results"]["finetune"]["validation"]["tasks"] == 2
    assert "finetune/exercises" in manifest.headline
    tasks = [
        json.loads(line)
        for line in open(tmp_path / "run" / "evaluate" / "models" / "finetune" / "exercises.tasks.jsonl")
    ]
    assert sorted(t["task_id"] for t in tasks) == [f"exercises/ex{i}" for i in range(3)]
    assert all(t["n"] == 2 and len(t["results"]) == 2 for t in tasks)
    assert not contract_problems(RunDir(tmp_path / "run"), ["evaluate"])


def test_phiray_eval_on_a_local_checkpoint(tmp_path):
    from phiray.cli import main

    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "--model",
                str(ckpt),
                "--bench",
                "humaneval",
                "--limit",
                "2",
                "-n",
                "2",
                "-k",
                "1,2",
                "--temperature",
                "0.8",
                "--max-new-tokens",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())["results"]["humaneval"]
    assert results["tasks"] == 2 and results["samples"] == 4 and results["pass@2"] == 0.0  # a random model
    rows = [json.loads(line) for line in open(out / "humaneval.tasks.jsonl")]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1"] and all(r["n"] == 2 for r in rows)
