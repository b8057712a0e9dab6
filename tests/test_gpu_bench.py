"""benchmarks/gpu.py's CPU mode: every figure of the prepared GPU check runs (tiny shapes), so it cannot rot;
the pipeline figure (phiray's own Ray Train + DeepSpeed pretrain, ~1-2 min here) in the slow tier."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from phiray.runtime import prepare_environment

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("phiray_gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_cpu_mode_prints_every_figure(gpu_bench, capsys):
    assert gpu_bench.main(["--cpu", "--no-compile", "--no-pipeline"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    figures = [r["figure"] for r in lines if "figure" in r]
    assert figures.count("train") == len(gpu_bench.CPU_PLAN.backends)
    assert {"environment", "growth", "embed"} <= set(figures) and figures.count("generate") == 2
    assert not [r for r in lines if "error" in r or "skipped" in r]
    train = [r for r in lines if r.get("figure") == "train"]
    assert all(r["tokens_per_s"] > 0 and r["mfu"] is None for r in train)  # no peak FLOP/s is known for a CPU
    growth = next(r for r in lines if r.get("figure") == "growth")
    # The trained small model is below ln(vocab); the grown one starts next to it, the fresh one does not.
    assert growth["ok"] and growth["step0_loss"]["small"] < growth["ln_vocab"]
    summary = lines[-1]
    assert summary["summary"] and summary["errors"] == [] and summary["growth_ok"] is True


def test_summary_judges_mfu_against_the_goal(gpu_bench):
    plan = gpu_bench.GPU_PLAN
    records = [
        {"figure": "train", "backend": "flash", "compile": True, "tokens_per_s": 5e4, "mfu": 0.45},
        {"figure": "train", "backend": "math", "compile": False, "tokens_per_s": 1e4, "mfu": 0.09},
        {"figure": "train/efficient/eager", "error": "RuntimeError: no kernel"},
    ]
    summary = gpu_bench.summary(records, plan)
    assert summary["best_train"]["backend"] == "flash" and summary["verdict"] == "meets the goal"
    assert summary["errors"] == ["train/efficient/eager"]


@pytest.mark.slow
def test_cpu_mode_times_phirays_own_pretrain_path_beside_the_bare_loop(gpu_bench, capsys):
    prepare_environment(local=True)
    records = gpu_bench.run_plan(gpu_bench.CPU_PLAN, budget_s=600, compile_on=False)
    capsys.readouterr()
    pipeline = next(r for r in records if r.get("figure") == "pipeline")
    assert "error" not in pipeline, pipeline
    assert pipeline["path"].startswith("phiray.train.driver.fit_phase") and pipeline["steps"] == 3
    assert pipeline["precision"] == "fp32" and pipeline["attn"] == "sdpa"  # the CPU settings of train.*=auto
    assert pipeline["tokens_per_s"] > 0 and pipeline["mfu"] is None  # the loop's own MFU: no CPU peak is known
    assert pipeline["ratio_to_bare"] > 0 and pipeline["batch"] == "2x64"
    assert gpu_bench.summary(records, gpu_bench.CPU_PLAN)["pipeline"]["tokens_per_s"] == pipeline["tokens_per_s"]
