"""Every job spec and Kubernetes manifest shipped in jobs/ and k8s/ is valid and says what it claims:
KubeRay resources against the CRDs' v1 schemas, core resources against their kinds, entrypoints naming
real stages with configs that load, hardening/GPU/storage/autoscaling where the README promises them."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from cluster_fixtures import REPO, by_kind, k8s_docs

from phiray.cluster import kuberay, validate
from phiray.cluster import spec as specs
from phiray.config import load_config
from phiray.stages import STAGES

JOB_FILES = sorted((REPO / "jobs").glob("*.yaml"))
COMMANDS = [s.name for s in STAGES] + ["serve", "run"]


@pytest.fixture(scope="module", autouse=True)
def _crds(kuberay_crds, monkeypatch_module):
    if not (kuberay_crds / validate.CRD_FILES["RayJob"]).is_file():
        pytest.skip(f"KubeRay CRDs not found at {kuberay_crds}")
    monkeypatch_module.setenv("PHIRAY_KUBERAY_CRDS", str(kuberay_crds))


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


# --------------------------------------------------------------------------- job specs


@pytest.mark.parametrize("command", COMMANDS)
def test_every_stage_has_a_smoke_and_a_phi_scale_spec(command):
    assert (REPO / "jobs" / f"{command}.smoke.yaml").is_file()
    assert (REPO / "jobs" / f"{command}.phi-1.yaml").is_file()


@pytest.mark.parametrize("path", JOB_FILES, ids=lambda p: p.name)
def test_job_spec_names_a_real_stage_and_its_config_loads(path):
    from ray.runtime_env import RuntimeEnv

    spec = specs.load_spec(path)
    command, cfg = specs.entrypoint_config(spec.entrypoint, working_dir=REPO)
    assert command == spec.stage and command in COMMANDS
    assert cfg.run.preset == ("tiny" if spec.variant == "smoke" else spec.variant)
    RuntimeEnv(**spec.runtime_env)  # Ray's own validation of the runtime_env fields
    if spec.variant == "smoke":  # a 2-CPU head must be able to run the driver next to the work
        assert spec.entrypoint_num_cpus == 0 and not spec.entrypoint_num_gpus
    tokens = specs.split_entrypoint(spec.entrypoint)
    run_dir = specs.option_value(tokens, "--run-dir") or specs.option_value(tokens, "--model")
    assert run_dir.startswith("/runs/"), "run dirs live on the shared volume mounted at /runs"


def test_every_variant_of_a_run_shares_one_config():
    """A run dir's stages must see the same config, or each job would make the others stale."""
    for variant in ("smoke", "phi-1"):
        hashes = set()
        for command in [s.name for s in STAGES] + ["run"]:
            spec = specs.load_spec(REPO / "jobs" / f"{command}.{variant}.yaml")
            hashes.add(specs.entrypoint_config(spec.entrypoint, working_dir=REPO)[1].to_yaml())
        assert len(hashes) == 1, variant


@pytest.mark.parametrize("config", ["smoke", "phi-1"])
def test_config_file_inlined_as_overrides_resolves_the_same(config):
    preset = "tiny" if config == "smoke" else config
    path = REPO / "jobs" / "configs" / f"{config}.yaml"
    assert load_config(preset, overrides=specs.config_overrides(path)) == load_config(preset, config_file=path)


def test_customise_replaces_options_and_appends_overrides(tmp_path):
    spec = specs.load_spec(REPO / "jobs" / "ingest.smoke.yaml")
    extra = tmp_path / "extra.yaml"
    extra.write_text("ingest: {max_bytes: 5000}\n")
    out = specs.customise(spec, run_dir="/x/run dir", preset="phi-1", config_file=extra, overrides=["run.seed=7"])
    tokens = specs.split_entrypoint(out.entrypoint)
    assert specs.option_value(tokens, "--run-dir") == "/x/run dir"
    assert tokens[-2:] == ["ingest.max_bytes=5000", "run.seed=7"]
    _, cfg = specs.entrypoint_config(out.entrypoint, working_dir=REPO)
    assert (cfg.run.preset, cfg.ingest.max_bytes, cfg.run.seed, cfg.run.name) == ("phi-1", 5000, 7, "smoke")


@pytest.mark.parametrize(
    "entrypoint,message",
    [
        ("python train.py", "expected `phiray <stage>"),
        ("phiray nosuchstage --preset tiny", "not a phiray stage"),
        ("phiray ingest --preset tiny ingest.nope=1", "ingest.nope: unknown key"),
        ("phiray ingest --preset tiny --frobnicate", "unknown arguments"),
        ("phiray ingest --preset nosuchpreset", "unknown preset"),
    ],
)
def test_bad_entrypoints_fail_before_submission(entrypoint, message):
    with pytest.raises(specs.SpecError, match=re.escape(message)):
        specs.entrypoint_config(entrypoint, working_dir=REPO)


def test_bad_spec_files_name_the_field(tmp_path):
    path = tmp_path / "ingest.smoke.yaml"
    path.write_text("stage: ingest\nvariant: smoke\nentrypoint: phiray ingest\nentrypoint_num_cpu: 1\n")
    with pytest.raises(specs.SpecError, match="entrypoint_num_cpu"):
        specs.load_spec(path)
    path.write_text("stage: ingest\nvariant: other\nentrypoint: phiray ingest\n")
    with pytest.raises(specs.SpecError, match="ingest.other.yaml"):
        specs.load_spec(path)


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("name,doc", k8s_docs(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_k8s_object_validates(name, doc):
    assert validate.validate_object(doc) == []


def test_every_stage_has_a_rayjob_and_the_rendered_files_are_current():
    rendered = kuberay.rendered_files()
    assert set(rendered) == {f"ray-job.{s.name}.yaml" for s in STAGES} | {"ray-service.phiray.yaml"}
    stale = [name for name, text in rendered.items() if (REPO / "k8s" / name).read_text() != text]
    assert not stale, f"re-run `python -m phiray.cluster.kuberay`: {stale}"


@pytest.mark.parametrize("job", by_kind("RayJob"), ids=lambda d: d["metadata"]["name"])
def test_rayjob_entrypoint_resolves_and_cleans_up(job):
    spec = job["spec"]
    entrypoint = spec["entrypoint"].replace(kuberay.IMAGE_ROOT, str(REPO))  # the image holds the repo there
    command, _ = specs.entrypoint_config(entrypoint)
    assert job["metadata"]["labels"]["phiray.io/stage"] == command
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert "working_dir" not in yaml.safe_load(spec.get("runtimeEnvYAML", "{}"))  # the code is in the image


def test_validator_is_not_vacuous():
    job = copy.deepcopy(by_kind("RayJob")[0])
    cluster = job["spec"]["rayClusterSpec"]
    cluster["workerGroupSpecs"][1]["template"]["spec"]["nodeSelectr"] = {"a": "b"}
    job["spec"]["entrypointNumCpus"] = "one"
    del cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["name"]
    errors = "\n".join(validate.validate_object(job))
    assert "nodeSelectr" in errors and "'one' is not of type 'number'" in errors and "'name' is a required" in errors
    job = copy.deepcopy(by_kind("RayJob")[0])
    job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = 99
    job["spec"]["rayClusterSpec"]["rayVersion"] = "2.50.0"  # too old for token auth
    job["spec"]["shutdownAfterJobFinishes"] = False  # a TTL without shutdown
    job["metadata"]["name"] = "9-starts-with-a-digit"
    errors = "\n".join(validate.validate_object(job))
    for expected in (
        "minReplicas <= replicas <= maxReplicas",
        "token mode needs rayVersion",
        "needs shutdownAfterJobFinishes",
        "DNS-1035",
    ):
        assert expected in errors
    job = copy.deepcopy(by_kind("RayJob")[0])
    del job["spec"]["rayClusterSpec"]
    job["spec"].update(clusterSelector={"ray.io/cluster": ""}, backoffLimit=2)
    errors = "\n".join(validate.validate_object(job))
    assert "non-empty ray.io/cluster" in errors and "incompatible with clusterSelector" in errors
    pvc = copy.deepcopy(by_kind("PersistentVolumeClaim")[0])
    pvc["spec"]["accesModes"] = ["ReadWriteMany"]
    pvc["spec"]["resources"]["requests"]["storage"] = 5
    assert len(validate.validate_object(pvc)) >= 2
    policy = copy.deepcopy(by_kind("NetworkPolicy")[0])
    policy["metadata"]["name"] = "Bad_Name"
    policy["spec"]["egress"][0]["to"][0]["podSelectr"] = {}
    assert len(validate.validate_object(policy)) == 2
    service = copy.deepcopy(by_kind("RayService")[0])
    service["spec"]["serveConfigV2"] = "applications: [{import_path: 3, nope: 1}]"
    assert any("serveConfigV2" in e for e in validate.validate_object(service))
