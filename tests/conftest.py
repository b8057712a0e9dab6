"""Shared fixtures. Ray is started once per session (num_cpus=2, loopback only, private temp dir)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from phiray.runtime import prepare_environment

# Before anything imports ray/deepspeed: loopback-only Ray, gloo on lo, DeepSpeed on CPU, no hub.
prepare_environment(local=True)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The key tests/test_serve.py's app requires on /v1/evaluate: its ingress replica reads it from the session's
# runtime env, as a RayService's reads it from a Secret.
os.environ.setdefault("PHIRAY_TEST_EVALUATOR_KEY", secrets.token_urlsafe(16))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray cluster shared by the whole test session (2 CPUs, as on CI)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {
        k: os.environ[k]
        for k in (
            "DS_ACCELERATOR",
            "GLOO_SOCKET_IFNAME",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "TOKENIZERS_PARALLELISM",
            "PHIRAY_TEST_EVALUATOR_KEY",
        )
        if k in os.environ
    }
    # `evaluator`, as the KubeRay cluster's hardened group advertises it (sandbox.ray_resources tests).
    ray.init(
        num_cpus=2,
        resources={"evaluator": 4},
        include_dashboard=False,
        _temp_dir=temp_dir,
        runtime_env={"env_vars": env},
        log_to_driver=False,
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True, scope="module")
def release_leftover_placement_groups():
    """After each test module, remove placement groups it left behind (a vLLM engine's bundle outlives its
    Ray Data pipeline): on a 2-CPU session cluster one stray {CPU: 1} bundle starves every later Train fit."""
    yield
    import ray

    if not ray.is_initialized():
        return
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    for pg_id, info in placement_group_table().items():
        if info.get("state") in ("CREATED", "PENDING", "RESCHEDULING"):
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg_id))))


@pytest.fixture(scope="session")
def mbpp_dir() -> Path:
    path = Path(os.environ.get("PHIRAY_MBPP_PATH", SHARED / "data" / "mbpp"))
    if not (path / "mbpp.jsonl").exists():
        pytest.skip(f"MBPP not found at {path}")
    return path


@pytest.fixture(scope="session")
def kuberay_crds() -> Path:
    return SHARED / "kuberay-crds"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 for the session, its endpoint and credentials in os.environ."""
    pytest.importorskip("moto", reason="moto[server] (the dev extra) provides the S3 test server")
    from s3_fixtures import start_s3, stop_group

    server = start_s3(tmp_path_factory.mktemp("s3") / "moto.log")
    patch = pytest.MonkeyPatch()
    for key, value in server.env.items():
        patch.setenv(key, value)
    yield server
    patch.undo()
    stop_group(server.process)
