"""sandbox.ray_resources: untrusted code runs only in actors holding those Ray resources (on KubeRay, the
hardened `evaluator` group; here the test session's Ray advertises `evaluator` the same way)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthesize_fixtures import run_synthesize, tiny_cfg

from phiray.config import SandboxConfig
from phiray.sandbox.placement import PlacementError, RemoteSandbox, sandbox_for, wait_placeable

ON_EVALUATOR = SandboxConfig(ray_resources={"evaluator": 1}, ray_num_cpus=0.5, workers=2)
NOWHERE = SandboxConfig(ray_resources={"evaluator-that-no-node-has": 1}, ray_num_cpus=0.5, placement_timeout_s=1)


def test_remote_sandbox_runs_in_an_actor_holding_the_resource(ray_session):
    sandbox = sandbox_for(ON_EVALUATOR)
    try:
        assert isinstance(sandbox, RemoteSandbox)
        assert sandbox.assigned.get("evaluator") == 1.0 and sandbox.node_id
        passed, failed = sandbox.check_many(
            [
                {"code": "def f(x):\n    return x + 1\n", "tests": "assert f(1) == 2\n", "entry_point": "f"},
                {"code": "def f(x):\n    return x\n", "tests": "assert f(1) == 2\n", "entry_point": "f"},
            ]
        )
        assert passed.passed and not failed.passed and failed.status == "failed"
        assert sandbox.check("import os\n", "assert True\n").passed
        assert sandbox.isolation in ("namespaces", "rlimits")
    finally:
        sandbox.close()


def test_no_sandbox_resources_means_in_process(ray_session):
    from phiray.sandbox import Sandbox

    assert type(sandbox_for(SandboxConfig())) is Sandbox


def test_a_resource_no_node_offers_is_a_clear_error_not_a_hang(ray_session):
    with pytest.raises(PlacementError, match=r"no Ray node offered .* within 1 s \(sandbox.ray_resources\)"):
        wait_placeable(NOWHERE)
    with pytest.raises(PlacementError, match="sandbox.ray_resources"):
        sandbox_for(NOWHERE)


def test_synthesize_verifies_exercises_on_the_evaluator_resource(tmp_path: Path, ray_session):
    small = ("synthesize.n_textbooks=4", "synthesize.n_exercises=12", "sandbox.ray_num_cpus=0.5")
    manifest = run_synthesize(tmp_path / "ok", tiny_cfg(*small, "sandbox.ray_resources={evaluator: 1}"))
    assert manifest.metrics["verification"]["checked"] == manifest.metrics["verification"]["passed"] > 0
    with pytest.raises(PlacementError, match="sandbox.ray_resources"):
        run_synthesize(
            tmp_path / "nowhere",
            tiny_cfg(*small, "sandbox.ray_resources={nowhere: 1}", "sandbox.placement_timeout_s=1"),
        )
    assert not (tmp_path / "nowhere" / "synthesize" / "_manifest.json").exists()
