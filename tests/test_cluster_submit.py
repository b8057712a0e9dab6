"""`phiray submit`: against a real local Ray head (Jobs API, token auth) and, for --k8s, the RayJob body
validated against the KubeRay CRD plus the HTTP calls against a fake Kubernetes API server."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml
from cluster_fixtures import VENV_BIN, list_jobs, start_fake_kube, start_head, stop_head

from phiray.cli import main
from phiray.cluster import submit, validate
from phiray.rundir import RunDir


@pytest.fixture(autouse=True)
def _crds(kuberay_crds, monkeypatch):
    monkeypatch.setenv("PHIRAY_KUBERAY_CRDS", str(kuberay_crds))


def test_k8s_dry_run_prints_a_valid_rayjob(capsys, tmp_path):
    extra = tmp_path / "mine.yaml"
    extra.write_text("ingest: {max_documents: 10}\n")
    code = main(
        [
            "submit",
            "ingest",
            "--variant",
            "phi-1",
            "--k8s",
            "--namespace",
            "ml",
            "--dry-run",
            "--run-dir",
            "/runs/mine",
            "--config",
            str(extra),
            "--image",
            "example.org/phiray:dev",
            "run.seed=3",
        ]
    )
    assert code == 0
    job = yaml.safe_load(capsys.readouterr().out)
    assert validate.validate_object(job) == []
    assert job["metadata"]["namespace"] == "ml" and job["metadata"]["name"].startswith("phiray-ingest-phi-1-")
    entrypoint = job["spec"]["entrypoint"]
    assert "--run-dir /runs/mine" in entrypoint and entrypoint.endswith("ingest.max_documents=10 run.seed=3")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == "example.org/phiray:dev"


def test_k8s_on_an_existing_cluster_uses_cluster_selector(capsys):
    assert main(["submit", "tokenize", "--variant", "smoke", "--k8s", "--cluster", "phiray", "--dry-run"]) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    assert validate.validate_object(job) == []
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "phiray"} and "rayClusterSpec" not in job["spec"]


def test_ray_dry_run_prints_the_equivalent_ray_job_submit(capsys):
    assert main(["submit", "dedup", "--ray-address", "http://127.0.0.1:1", "--dry-run", "dedup.num_perm=32"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("ray job submit --address http://127.0.0.1:1 ")
    assert line.endswith(
        " -- phiray dedup --preset tiny --config jobs/configs/smoke.yaml --run-dir /runs/smoke dedup.num_perm=32"
    )
    assert "--entrypoint-num-cpus 0" in line and '"working_dir": "/' in line


def test_bad_config_fails_before_anything_is_submitted(capsys):
    # Port 1 is closed: reaching the network at all would fail differently.
    assert main(["submit", "ingest", "--ray-address", "http://127.0.0.1:1", "ingest.nope=1"]) == 2
    assert "ingest.nope: unknown key" in capsys.readouterr().err
    assert main(["submit", "ingest", "--variant", "nosuch", "--k8s"]) == 2
    assert "variants of ingest: phi-1, smoke" in capsys.readouterr().err
    assert main(["submit", "ingest", "--ray-address", "http://127.0.0.1:1", "--run-dir", "runs/x"]) == 2
    assert "absolute path on shared storage" in capsys.readouterr().err


@pytest.fixture
def fake_kube(tmp_path, monkeypatch):
    fake = start_fake_kube()
    monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.setattr(submit, "K8S_POLL_S", 0.05)
    yield fake
    fake.server.shutdown()


def test_k8s_creates_the_rayjob_and_follows_its_status(fake_kube, capsys):
    fake_kube.statuses = [("Initializing", ""), ("Running", "RUNNING"), ("Complete", "SUCCEEDED")]
    code = main(
        [
            "submit",
            "pretrain",
            "--variant",
            "phi-1",
            "--k8s",
            "--namespace",
            "ml",
            "--wait",
            "--submission-id",
            "phiray-pretrain-test",
        ]
    )
    assert code == 0
    post = fake_kube.requests[0]
    assert (post["method"], post["path"]) == ("POST", "/apis/ray.io/v1/namespaces/ml/rayjobs")
    assert post["auth"] == "Bearer test-token" and post["content_type"].startswith("application/json"), post["headers"]
    assert post["body"]["metadata"]["name"] == "phiray-pretrain-test"
    assert validate.validate_object(post["body"]) == []
    reads = [r for r in fake_kube.requests if r["method"] == "GET"]
    assert len(reads) == 3 and {r["path"] for r in reads} == {
        "/apis/ray.io/v1/namespaces/ml/rayjobs/phiray-pretrain-test/status"
    }
    assert "deployment=Complete job=SUCCEEDED" in capsys.readouterr().err


def test_k8s_failed_job_exits_nonzero_and_no_wait_returns_at_once(fake_kube):
    fake_kube.statuses = [("Running", "RUNNING"), ("Failed", "FAILED")]
    assert main(["submit", "evaluate", "--k8s", "--namespace", "ml", "--wait"]) == 1
    fake_kube.requests.clear()
    assert main(["submit", "evaluate", "--k8s", "--namespace", "ml"]) == 0
    assert [r["method"] for r in fake_kube.requests] == ["POST", "GET"]


# --------------------------------------------------------------------------- a real Ray head


@pytest.fixture(scope="module")
def ray_head():
    head = start_head(num_cpus=2)
    yield head
    stop_head(head)


def run_submit(head, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [os.path.join(VENV_BIN, "phiray"), "submit", *args, "--ray-address", head.address]
    return subprocess.run(cmd, env=env or head.env, capture_output=True, text=True, timeout=600, cwd="/tmp")


@pytest.mark.slow
def test_submit_runs_a_stage_on_a_real_ray_head(ray_head, tmp_path):
    run_dir = tmp_path / "run"
    result = run_submit(
        ray_head,
        "ingest",
        "--variant",
        "smoke",
        "--run-dir",
        str(run_dir),
        "ingest.sources=[{kind: stdlib, limit: 30}]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SUCCEEDED" in result.stderr
    assert "stage ingest: done" in result.stdout  # the driver's log, followed live
    manifest = RunDir(run_dir).read_manifest("ingest")
    assert manifest is not None and manifest.rows["documents"] == 30
    # The job ran the entrypoint from the spec, with the uploaded working dir and the job's metadata.
    job = next(j for j in list_jobs(ray_head) if (j.get("metadata") or {}).get("stage") == "ingest")
    assert job["metadata"]["variant"] == "smoke" and job["entrypoint"].startswith("phiray ingest --preset tiny")
    assert job["runtime_env"]["working_dir"].startswith("gcs://") and job["status"] == "SUCCEEDED"


@pytest.mark.slow
def test_failed_stage_and_missing_token_give_distinct_exit_codes(ray_head, tmp_path):
    # dedup without an ingest manifest: the stage refuses, the job FAILS, submit exits 1.
    result = run_submit(ray_head, "dedup", "--run-dir", str(tmp_path / "empty"))
    assert result.returncode == 1 and "FAILED" in result.stderr, result.stderr[-3000:]
    assert "needs stage ingest first" in result.stdout + result.stderr
    no_token = {**ray_head.env, "RAY_AUTH_MODE": "disabled"}
    result = run_submit(ray_head, "ingest", "--run-dir", str(tmp_path / "x"), env=no_token)
    assert result.returncode == 2 and "RAY_AUTH_TOKEN" in result.stderr


def test_a_job_driver_does_not_repeat_the_jobs_env_vars(monkeypatch):
    """Ray refuses a driver's ray.init runtime_env that repeats a variable the job already sets."""
    from phiray import runtime

    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", '{"runtime_env": {"env_vars": {"HF_HUB_OFFLINE": "1"}}}')
    assert runtime._job_env_vars() == {"HF_HUB_OFFLINE"}
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert runtime._job_env_vars() == set()
