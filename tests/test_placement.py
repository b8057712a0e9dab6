"""Where work runs: manifests' placement record, generation in a task, the evaluator's resources."""

from __future__ import annotations

import os

from phiray.evals.benchmarks import Task
from phiray.evals.generation import GenerationSettings, generate_in_task
from phiray.placement import peak_rss_mb, stage_placement
from phiray.rundir import RunDir


def test_generation_runs_in_a_task_holding_its_resources_and_reads_the_model_from_the_run_dir(ray_session, tmp_path):
    def where(model_dir: str, tasks: list[Task], gen: GenerationSettings) -> list[dict]:
        import os

        import ray

        files, ctx = sorted(os.listdir(model_dir)), ray.get_runtime_context()
        return [
            {"task_id": t.task_id, "completion": f"{os.getpid()}|{files}|{ctx.get_assigned_resources()}"} for t in tasks
        ]

    rd = RunDir(tmp_path / "run")
    rd.write_text("finetune/model/config.json", "{}")
    tasks = [Task(task_id="t1", prompt="def f():", tests="", entry_point="f")]
    [sample] = generate_in_task(
        rd.fs_path(), "finetune/model", tasks, GenerationSettings(), num_cpus=0.5, generate=where
    )  # a local function: pickled by value
    pid, files, resources = sample["completion"].split("|")
    assert int(pid) != os.getpid()  # not in the driver
    assert files == "['config.json']" and "'CPU': 0.5" in resources


def test_local_stage_placement_records_the_driver_and_the_node(ray_session):
    record = stage_placement(0, uses_ray=True)
    assert record["driver"]["peak_rss_mb"] == peak_rss_mb() > 50
    assert record["driver"]["node_id"] in record["nodes"] and "local cluster" in record["source"]
    assert stage_placement(0, uses_ray=False)["source"].startswith("driver only")


def test_build_app_puts_the_evaluator_where_sandbox_ray_resources_say(tmp_path):
    from ray.serve._private.build_app import build_app as build
    from ray.serve.deployment import deployment_to_schema

    from phiray.serve.app import build_app

    app = build_app({"model": str(tmp_path), "sandbox": {"ray_resources": {"evaluator": 1}}})
    options = {
        d.name: deployment_to_schema(d).model_dump(exclude_unset=True)["ray_actor_options"]
        for d in build(app, name="t").deployments
    }
    assert options["evaluator"]["resources"] == {"evaluator": 1.0}
    assert "evaluator" not in options["model"].get("resources", {})


def test_grow_step0_device_is_the_cpu_when_torch_sees_no_gpu():
    from phiray.train.grow import assigned_device

    assert assigned_device().type == "cpu"


def test_dedup_shuffle_is_sized_from_the_data_not_the_cpus_present():
    from phiray.stages.dedup import shuffle_partitions

    assert shuffle_partitions(None, 0) == 1 and shuffle_partitions(None, 300 << 20, target_bytes=128 << 20) == 3
    assert shuffle_partitions(None, 10 << 40) == 1024 and shuffle_partitions(7, 300 << 20) == 7
    assert shuffle_partitions(None, 0, cpus=8) == 8  # CPUs present only spread small data
