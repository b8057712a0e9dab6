"""What the evaluator pods are granted for the sandbox, and nothing more: uid 1000 without capabilities, the
Localhost seccomp profile shipped in k8s/ (the namespace calls allowed, the dangerous ones not), egress only
to Ray ports and DNS, no API key or teacher secret on the pods that run untrusted code."""

from __future__ import annotations

import json

from cluster_fixtures import REPO, by_kind, cluster_specs

PROFILE = REPO / "k8s" / "phiray-evaluator-seccomp.json"
NAMESPACE_CALLS = {"unshare", "clone", "clone3", "setns", "mount", "umount2", "pivot_root", "capset", "seccomp"}
NEVER = {
    "kexec_load",
    "init_module",
    "bpf",
    "ptrace",
    "process_vm_readv",
    "keyctl",
    "reboot",
    "userfaultfd",
    "io_uring_setup",
    "open_by_handle_at",
    "perf_event_open",
    "swapon",
}


def test_seccomp_profile_allows_the_namespace_calls_and_denies_by_default():
    profile = json.loads(PROFILE.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"  # a call not listed (a new kernel's) is refused
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
    assert NAMESPACE_CALLS <= allowed and not NEVER & allowed
    assert {"read", "write", "openat", "mmap", "execve", "wait4", "socketpair", "sendmsg"} <= allowed


def evaluator_groups():
    for name, cluster in cluster_specs():
        for group in cluster["workerGroupSpecs"]:
            if group["groupName"] == "evaluator":
                yield name, group


def test_every_evaluator_group_is_uid_1000_capability_free_and_uses_the_profile():
    groups = list(evaluator_groups())
    assert len(groups) >= 2  # the RayCluster's and every rendered RayJob's/RayService's
    for name, group in groups:
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 1000 and pod["securityContext"]["runAsNonRoot"], name
        assert pod["securityContext"]["seccompProfile"] == {"type": "Localhost", "localhostProfile": PROFILE.name}, name
        assert pod["automountServiceAccountToken"] is False, name
        [container] = pod["containers"]
        ctx = container["securityContext"]
        assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["allowPrivilegeEscalation"] is False, name
        assert not ctx.get("privileged") and ctx["readOnlyRootFilesystem"], name
        env = {e["name"] for e in container.get("env", [])}
        assert not env & {"PHIRAY_EVALUATOR_API_KEY", "OPENAI_API_KEY"}, name  # no secret next to untrusted code


def test_evaluator_egress_reaches_only_ray_ports_and_dns():
    [policy] = [
        p
        for p in by_kind("NetworkPolicy")
        if p["spec"]["podSelector"]["matchLabels"].get("phiray.io/role") == "evaluator"
    ]
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for rule in policy["spec"]["egress"]:
        assert rule.get("ports"), "an egress rule without ports opens every port"
        for port in rule["ports"]:
            assert port["port"] in (53, 6379, 8076, 8077, 10002), port
            if port["port"] == 10002:
                assert port["endPort"] == 19999
        for peer in rule["to"]:
            assert "ipBlock" not in peer  # no address outside the cluster's own pods


def test_the_head_pins_the_ports_the_policy_names():
    for name, cluster in cluster_specs():
        params = cluster["headGroupSpec"]["rayStartParams"]
        assert (params["object-manager-port"], params["node-manager-port"]) == ("8076", "8077"), name
        for group in cluster["workerGroupSpecs"]:
            assert group["rayStartParams"]["object-manager-port"] == "8076", (name, group["groupName"])
