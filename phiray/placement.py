"""Where a stage's work ran: the manifest's ``placement`` (node ids, resources, the driver's peak memory).

On a cluster (``RAY_ADDRESS`` set: a `phiray submit` job or a RayJob) the record comes from Ray's own
task table (the state API, served by the dashboard every Jobs-API cluster runs): every task and actor
of this job since the stage started, grouped by function/class and node, with the resources each asked
for, beside each node's advertised resources. On a local cluster everything ran on the one node and the
record says so. The driver's peak RSS shows that nothing proportional to the data ran in it.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import time
from typing import Any

log = logging.getLogger("phiray")
TASK_LIMIT = 10_000  # the state API's page: enough for the work of one stage of a rehearsal-sized run
EVENT_FLUSH_S = 2.0  # Ray reports task events about once a second (task_events_report_interval_ms)


def peak_rss_mb() -> float:
    """This process's peak resident memory (``ru_maxrss`` is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def driver_info() -> dict[str, Any]:
    info: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid(), "peak_rss_mb": peak_rss_mb()}
    try:
        import ray

        if ray.is_initialized():
            info["node_id"] = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return info


def _nodes() -> dict[str, dict[str, float]]:
    import ray

    return {n["NodeID"]: dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")}


def _job_work(job_id: str, since_ms: int) -> tuple[list[dict[str, Any]], bool]:
    """Tasks and actors of ``job_id`` started since ``since_ms``, grouped by (name, node)."""
    from ray.util.state import list_tasks

    time.sleep(EVENT_FLUSH_S)  # let the last tasks' events reach the GCS
    tasks = list_tasks(filters=[("job_id", "=", job_id)], detail=True, limit=TASK_LIMIT, raise_on_missing_output=False)
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for task in tasks:
        started = task.start_time_ms or task.creation_time_ms or 0
        if not task.node_id or started < since_ms:
            continue
        key = (task.func_or_class_name or task.name, task.node_id)
        group = groups.setdefault(
            key,
            {
                "name": key[0],
                "node_id": task.node_id,
                "type": str(task.type),
                "resources": dict(task.required_resources or {}),
                "tasks": 0,
            },
        )
        group["tasks"] += 1
    return sorted(groups.values(), key=lambda g: (g["name"], g["node_id"])), len(tasks) >= TASK_LIMIT


def stage_placement(since_ms: int, uses_ray: bool) -> dict[str, Any]:
    """The ``placement`` record of a stage that started at ``since_ms`` (epoch milliseconds)."""
    record: dict[str, Any] = {"driver": driver_info()}
    if not uses_ray:
        record["work"], record["source"] = [], "driver only (the stage uses no Ray)"
        return record
    import ray

    if not ray.is_initialized():
        record["work"], record["source"] = [], "driver only (Ray was not started)"
        return record
    record["nodes"] = _nodes()
    if not os.environ.get("RAY_ADDRESS"):
        record["work"], record["source"] = [], "local cluster: every task ran on the driver's node"
        return record
    try:
        record["work"], record["truncated"] = _job_work(ray.get_runtime_context().get_job_id(), since_ms)
        record["source"] = "ray state API (task table of this job)"
    except Exception as err:  # noqa: BLE001  (a missing dashboard must not fail a finished stage)
        log.warning("placement: the state API did not answer (%s); the manifest records the driver only", err)
        record["work"], record["source"] = [], f"unavailable: {type(err).__name__}: {err}"
    return record


def nodes_of(placement: dict[str, Any], name_part: str) -> set[str]:
    """Node ids where work whose name contains ``name_part`` ran (for checks and reports)."""
    return {g["node_id"] for g in placement.get("work", []) if name_part in g["name"]}
