"""What the cluster manifests promise, checked in every Ray cluster they create (the RayCluster and the
inline clusters of each RayJob and the RayService): evaluator hardening, GPU scheduling, autoscaling
bounds, shared run storage; the RayService's app; the Dockerfile the manifests' image comes from."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
import yaml
from cluster_fixtures import REPO, by_kind, cluster_specs

from phiray.cluster import kuberay
from phiray.config import load_config

CLUSTERS = cluster_specs()
IDS = [name for name, _ in CLUSTERS]


def groups(cluster: dict) -> dict[str, dict]:
    return {g["groupName"]: g for g in cluster["workerGroupSpecs"]}


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("cluster", [c for _, c in CLUSTERS], ids=IDS)
def test_evaluator_workers_are_hardened(cluster):
    pod = groups(cluster)["evaluator"]["template"]
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    # issue 14: the sandbox's user namespaces need the shipped Localhost profile (or a gVisor runtime class)
    seccomp = spec["securityContext"]["seccompProfile"]
    assert seccomp == {"type": "Localhost", "localhostProfile": "phiray-evaluator-seccomp.json"} or (
        seccomp["type"] == "RuntimeDefault" and spec.get("runtimeClassName")
    )
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["runAsNonRoot"] is True and sc["capabilities"]["drop"] == ["ALL"] and not sc.get("privileged")
        # Ray needs a writable /tmp; nothing else is writable, and the run data is not mounted at all.
        assert [m["mountPath"] for m in container.get("volumeMounts", [])] == ["/tmp"]
    account = next(a for a in by_kind("ServiceAccount") if a["metadata"]["name"] == spec["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    assert "evaluator" in groups(cluster)["evaluator"]["rayStartParams"]["resources"]


def test_network_policy_denies_evaluator_egress():
    evaluator_labels = groups(by_kind("RayCluster")[0]["spec"])["evaluator"]["template"]["metadata"]["labels"]
    other_labels = groups(by_kind("RayCluster")[0]["spec"])["cpu"]["template"]["metadata"]["labels"]
    policies = [p for p in by_kind("NetworkPolicy") if labels_match(p["spec"]["podSelector"], evaluator_labels)]
    assert len(policies) == 1
    policy = policies[0]["spec"]
    assert not labels_match(policies[0]["spec"]["podSelector"], other_labels)
    assert "Egress" in policy["policyTypes"]
    for rule in policy["egress"]:
        assert rule.get("to"), "an egress rule without `to` would allow every destination"
        for peer in rule["to"]:
            assert "ipBlock" not in peer
            if "namespaceSelector" in peer:  # only cluster DNS, only on port 53
                assert peer["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
                assert {p["port"] for p in rule["ports"]} == {53}
            else:  # only the cluster's own Ray pods (issue 14: the head's ports, the peers' object manager)
                assert peer["podSelector"]["matchLabels"].get("phiray.io/app") == "phiray" and rule.get("ports")


@pytest.mark.parametrize("cluster", [c for _, c in CLUSTERS], ids=IDS)
def test_gpu_group_requests_gpus_on_gpu_nodes(cluster):
    spec = groups(cluster)["gpu"]["template"]["spec"]
    limits = spec["containers"][0]["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    assert any(k.startswith("nvidia.com/gpu") for k in spec["nodeSelector"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


@pytest.mark.parametrize("cluster", [c for _, c in CLUSTERS], ids=IDS)
def test_autoscaling_bounds_and_shared_run_storage(cluster):
    assert cluster["enableInTreeAutoscaling"] is True
    for g in cluster["workerGroupSpecs"]:
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    claim = by_kind("PersistentVolumeClaim")[0]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]
    for name in ["head", "cpu", "gpu"]:
        pod = cluster["headGroupSpec"] if name == "head" else groups(cluster)[name]
        volumes = {v["name"]: v for v in pod["template"]["spec"]["volumes"]}
        mount = next(m for m in pod["template"]["spec"]["containers"][0]["volumeMounts"] if m["mountPath"] == "/runs")
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_head_schedules_no_work_and_everything_runs_the_image():
    cluster = by_kind("RayCluster")[0]["spec"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["rayVersion"] == version("ray")
    images = {
        c["image"]
        for pod in [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
        for c in pod["template"]["spec"]["containers"]
    }
    assert len(images) == 1


def test_rayservice_serves_the_app_builder():
    from phiray.serve import app as app_module
    from phiray.serve import deployments

    service = by_kind("RayService")[0]["spec"]
    config = yaml.safe_load(service["serveConfigV2"])
    app = config["applications"][0]
    assert app["import_path"] == "phiray.serve.app:build_app"
    module, attr = app["import_path"].split(":")
    assert callable(getattr(__import__(module, fromlist=[attr]), attr))
    names = {deployments.Evaluator.name, app_module.MODEL_DEPLOYMENT, app_module.INGRESS_DEPLOYMENT}
    assert {d["name"] for d in app["deployments"]} <= names
    assert app["args"]["use_gpu"] is True  # the vLLM engine's bundle asks for a GPU
    evaluator = next(d for d in app["deployments"] if d["name"] == "evaluator")
    assert "evaluator" in evaluator["ray_actor_options"]["resources"]  # lands on the hardened group
    assert config["http_options"]["host"] == "0.0.0.0"
    args = app["args"]  # the builder's base config loads (the image holds the repo at IMAGE_ROOT)
    load_config(args["preset"], config_file=args["config"].replace(kuberay.IMAGE_ROOT, str(REPO)))
    assert args["model"].startswith("/runs/")


def test_dockerfile_builds_the_image_the_manifests_expect():
    text = (REPO / "Dockerfile").read_text()
    ray_version = re.search(r"ARG RAY_VERSION=(\S+)", text).group(1)
    assert ray_version == version("ray")
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py3\d+-gpu$", text, re.M)
    assert re.search(rf"^WORKDIR {kuberay.IMAGE_ROOT}$", text, re.M)
    assert re.search(r"^USER 1000(:\d+)?$", text, re.M)  # numeric, so runAsNonRoot can verify it
    assert re.search(r"COPY .*\bjobs \./jobs", text)  # the specs' --config files
    installs = [line for line in text.splitlines() if "pip install" in line and "--upgrade" not in line]
    assert installs and all("torch==${TORCH_VERSION}" in line for line in installs)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "runs"} <= set(ignored)
