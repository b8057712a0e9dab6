"""Where untrusted code runs on a cluster: on the nodes that offer ``sandbox.ray_resources``.

On the KubeRay cluster only the hardened ``evaluator`` worker group advertises the custom resource
``evaluator`` (k8s/ray-cluster.phiray.yaml). With ``sandbox.ray_resources={evaluator: 1}`` every stage that
executes generated code asks Ray for it: the synthesize stage's verification actors directly, and the
evaluate stage and sweep trials through :class:`RemoteSandbox`, a :class:`Sandbox` living in an actor that
holds those resources. With ``ray_resources`` empty (local runs) :func:`sandbox_for` returns a plain
in-process :class:`Sandbox`.

A request nothing can satisfy would wait forever; :func:`wait_placeable` turns that into a clear error
after ``sandbox.placement_timeout_s`` (long enough for an autoscaler to bring a group up from zero).
"""

from __future__ import annotations

import logging
from typing import Any

from phiray.config import SandboxConfig
from phiray.sandbox.executor import Sandbox, Verdict

log = logging.getLogger("phiray")


class PlacementError(RuntimeError):
    """No node offered the sandbox's Ray resources in time."""


def _no_node(resources: dict[str, float], timeout_s: float) -> PlacementError:
    return PlacementError(
        f"sandbox: no Ray node offered resources {resources} within {timeout_s:g} s (sandbox.ray_resources). "
        "On KubeRay, check that the evaluator group can scale up; on a cluster of your own start its workers "
        "with `ray start --resources '{\"evaluator\": 16}'`; on one machine set sandbox.ray_resources={}."
    )


def remote_options(cfg: SandboxConfig) -> dict[str, Any]:
    """Ray options for an actor or task that runs untrusted code."""
    return {"num_cpus": cfg.ray_num_cpus, "resources": dict(cfg.ray_resources)}


class _Host:
    """The actor's side: an ordinary Sandbox."""

    def __init__(self, cfg: SandboxConfig):
        self.sandbox = Sandbox(cfg)

    def node(self) -> dict[str, Any]:
        import ray

        ctx = ray.get_runtime_context()
        return {
            "node_id": ctx.get_node_id(),
            "assigned": ctx.get_assigned_resources(),
            "isolation": self.sandbox.isolation,
        }

    def check(self, code: str, tests: str, entry_point: str | None, timeout_s: float | None) -> Verdict:
        return self.sandbox.check(code, tests, entry_point, timeout_s)

    def check_many(self, jobs: list[dict[str, Any]], workers: int | None) -> list[Verdict]:
        return self.sandbox.check_many(jobs, workers)


def wait_placeable(cfg: SandboxConfig) -> None:
    """Block until some node can host a sandbox actor (a probe: it also asks an autoscaler for one)."""
    if cfg.ray_resources:
        RemoteSandbox(cfg).close()


class RemoteSandbox:
    """The Sandbox API (``isolation``, ``check``, ``check_many``), executed in an actor that holds
    ``sandbox.ray_resources``; ``node_id`` and ``assigned`` (the resources Ray gave it) say where."""

    def __init__(self, cfg: SandboxConfig):
        import ray

        self.cfg = cfg
        self._actor = ray.remote(_Host).options(**remote_options(cfg)).remote(cfg)
        ready, _ = ray.wait([ref := self._actor.node.remote()], timeout=cfg.placement_timeout_s)
        if not ready:
            ray.kill(self._actor)
            raise _no_node(dict(cfg.ray_resources), cfg.placement_timeout_s)
        where = ray.get(ref)
        self.node_id, self.assigned, self.isolation = where["node_id"], where["assigned"], where["isolation"]
        log.info(
            "sandbox: untrusted code runs on node %s (resources %s, %s)",
            self.node_id[:12],
            dict(cfg.ray_resources),
            self.isolation,
        )

    def check(self, code: str, tests: str, entry_point: str | None = None, timeout_s: float | None = None) -> Verdict:
        import ray

        return ray.get(self._actor.check.remote(code, tests, entry_point, timeout_s))

    def check_many(self, jobs: list[dict[str, Any]], workers: int | None = None) -> list[Verdict]:
        import ray

        return ray.get(self._actor.check_many.remote(jobs, workers)) if jobs else []

    def close(self) -> None:
        import ray

        ray.kill(self._actor)


def sandbox_for(cfg: SandboxConfig) -> Sandbox | RemoteSandbox:
    """A RemoteSandbox when ``cfg.ray_resources`` names resources, else an in-process Sandbox."""
    return RemoteSandbox(cfg) if cfg.ray_resources else Sandbox(cfg)
