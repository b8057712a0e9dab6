"""Process-wide runtime set-up: Ray (join a cluster or start a loopback-only local one), devices."""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("phiray")

# Set before Ray/DeepSpeed/torch.distributed start. The first keeps every Ray listener on 127.0.0.1
# for a local cluster (refused for multi-node, so it is only set when no cluster address is given).
LOCAL_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "GLOO_SOCKET_IFNAME": "lo",
    "MASTER_ADDR": "127.0.0.1",
}
COMMON_ENV = {
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_V2_ENABLED": "1",
}


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch or a broken driver both mean "no GPU"
        return False


def prepare_environment(local: bool | None = None) -> None:
    """Environment defaults (never overriding what the user set)."""
    if local is None:
        local = not os.environ.get("RAY_ADDRESS")
    for key, value in COMMON_ENV.items():
        os.environ.setdefault(key, value)
    if local:
        for key, value in LOCAL_ENV.items():
            os.environ.setdefault(key, value)
    if "DS_ACCELERATOR" not in os.environ and not has_cuda():
        os.environ["DS_ACCELERATOR"] = "cpu"


# Ray-internal loggers that repeat one warning for as long as a run lasts. Ray Train V2's detached
# PlacementGroupCleaner asks the State API (served by the dashboard, which a local phiray cluster does not
# start) whether the controller is alive once a second, and warns on every failed query. Each listed
# message is shown once per process; repeats are dropped.
REPEATING_RAY_WARNINGS: dict[str, tuple[str, ...]] = {
    "ray.train.v2._internal.execution.controller.placement_group_cleaner": (
        "Failed to query Ray Train Controller actor state",
    ),
}


class OncePerProcess(logging.Filter):
    """Passes the first record whose message starts with one of ``prefixes``, drops its repeats."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes, self.seen = prefixes, set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        prefix = next((p for p in self.prefixes if message.startswith(p)), None)
        if prefix is None:
            return True
        if prefix in self.seen:
            return False
        self.seen.add(prefix)
        return True


def quiet_ray_logs() -> None:
    """Install :class:`OncePerProcess` on Ray's repeating loggers (a Ray ``worker_process_setup_hook``)."""
    for name, prefixes in REPEATING_RAY_WARNINGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, OncePerProcess) for f in logger.filters):
            logger.addFilter(OncePerProcess(prefixes))


WORKER_SETUP_HOOK = f"{__name__}.quiet_ray_logs"


def _job_env_vars() -> set[str]:
    """Variables a `ray job submit` runtime env already sets for this driver: passing one again to
    ray.init is refused by Ray ("Failed to merge the Job's runtime env"), and the job's value is
    already in os.environ anyway."""
    raw = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return set()
    import json

    runtime_env = json.loads(raw).get("runtime_env") or {}
    return set(runtime_env.get("env_vars") or {})


def init_ray(num_cpus: int | None = None, num_gpus: int | None = None, **kwargs: Any) -> None:
    """Join the cluster named by RAY_ADDRESS, or start a local loopback-only one sized to the machine."""
    address = os.environ.get("RAY_ADDRESS")
    # Before `import ray`: Ray reads the loopback switch when it is imported, not when it starts.
    prepare_environment(local=not address)
    import ray

    if ray.is_initialized():
        return
    env_vars = {
        k: os.environ[k]
        for k in (
            "DS_ACCELERATOR",
            "GLOO_SOCKET_IFNAME",
            "HF_HUB_OFFLINE",
            "TOKENIZERS_PARALLELISM",
            "PHIRAY_MBPP_PATH",
        )
        if k in os.environ and k not in _job_env_vars()
    }
    runtime_env = kwargs.pop("runtime_env", None) or {
        "env_vars": env_vars,
        "worker_process_setup_hook": WORKER_SETUP_HOOK,
    }
    if address:
        log.info("ray: joining the cluster at RAY_ADDRESS=%s", address)
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True, **kwargs)
    else:
        cpus = num_cpus or os.cpu_count() or 1
        log.info("ray: starting a local cluster on 127.0.0.1 with %s CPUs (set RAY_ADDRESS to join a cluster)", cpus)
        ray.init(num_cpus=cpus, num_gpus=num_gpus, include_dashboard=False, runtime_env=runtime_env, **kwargs)
