"""Building the Serve app from args dicts: `serve run ... key=value`, Serve configs / RayService, `phiray serve`."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from phiray.serve.app import build_app


def _deployments(app) -> dict[str, dict]:
    from ray.serve._private.build_app import build_app as build
    from ray.serve.deployment import deployment_to_schema

    return {d.name: deployment_to_schema(d).model_dump(exclude_unset=True) for d in build(app, name="t").deployments}


def test_string_args_as_serve_run_passes_them(tmp_path):
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.deployment import Application

    args = {
        "model": str(tmp_path),
        "max_batch_size": "48",
        "model_num_cpus": "2",
        "autoscaling": '{"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 8}',
        "sandbox": '{"timeout_s": 3}',
    }
    app = call_user_app_builder_with_args_if_necessary(import_attr("phiray.serve.app:build_app"), args)
    assert isinstance(app, Application)
    d = _deployments(app)
    assert set(d) == {"openai", "model", "evaluator"}
    assert d["model"]["autoscaling_config"]["max_replicas"] == 3
    # The vLLM engine's CPUs are its placement-group bundle; the replica actor reserves none beside it.
    [bundle] = d["model"]["placement_group_bundles"]
    assert bundle["CPU"] == 2 and not bundle.get("GPU")
    assert d["model"]["ray_actor_options"].get("num_cpus", 0) == 0
    assert d["evaluator"]["ray_actor_options"]["num_cpus"] == 0.5  # its own CPUs, not the model's
    assert d["evaluator"]["max_ongoing_requests"] == 4
    assert d["openai"]["ray_actor_options"]["num_cpus"] == 0


def test_engine_settings_follow_the_config(tmp_path):
    from phiray.serve.app import llm_config, resolve_args

    cpu = llm_config(
        resolve_args(
            {
                "model": str(tmp_path),
                "max_batch_size": 48,
                "max_model_len": 512,
                "engine_kwargs": '{"enable_prefix_caching": true}',
            }
        )[0]
    )
    assert cpu.engine_kwargs["max_num_seqs"] == 48 and cpu.engine_kwargs["max_model_len"] == 512
    assert cpu.engine_kwargs["dtype"] == "float32" and cpu.engine_kwargs["enforce_eager"] is True
    assert cpu.engine_kwargs["enable_prefix_caching"] is True
    assert "chat_template" in cpu.engine_kwargs  # the directory ships none: phiray's default is served
    assert cpu.placement_group_config == {"bundles": [{"CPU": 1.0}]}
    assert cpu.runtime_env["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] == "1"
    gpu = llm_config(
        resolve_args(
            {
                "model": str(tmp_path),
                "use_gpu": True,
                "tensor_parallel_size": 2,
                "model_num_cpus": 4,
                "dtype": "float16",
            }
        )[0]
    )
    assert gpu.placement_group_config == {"bundles": [{"GPU": 1, "CPU": 4.0}] * 2}
    assert gpu.engine_kwargs["tensor_parallel_size"] == 2 and gpu.engine_kwargs["enforce_eager"] is False
    assert gpu.engine_kwargs["dtype"] == "float16"


def test_bad_args_fail_before_anything_starts(tmp_path):
    with pytest.raises(ValueError, match="model="):
        build_app({})
    with pytest.raises(ValidationError, match="max_batch_szie"):
        build_app({"model": str(tmp_path), "max_batch_szie": 4})
    with pytest.raises(ValidationError):
        build_app({"model": str(tmp_path), "max_batch_size": "many"})


def test_emitted_serve_config_validates_and_builds(tmp_path, capsys):
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve.schema import ServeDeploySchema

    from phiray.cli import main

    out = tmp_path / "serve.yaml"
    assert (
        main(
            [
                "serve",
                "--model",
                str(tmp_path),
                "--preset",
                "tiny",
                "--port",
                "8123",
                "--emit-config",
                str(out),
                "serve.max_batch_size=24",
                "sandbox.timeout_s=4",
            ]
        )
        == 0
    )
    config = yaml.safe_load(out.read_text())
    schema = ServeDeploySchema.model_validate(config)
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8123
    [application] = config["applications"]
    assert application["args"]["sandbox"] == {"timeout_s": 4.0}
    app = call_user_app_builder_with_args_if_necessary(import_attr(application["import_path"]), application["args"])
    assert _deployments(app)["model"]["placement_group_bundles"][0]["CPU"] == 1
    assert main(["serve"]) == 2 and "--model" in capsys.readouterr().err
