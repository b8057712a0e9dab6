"""`phiray submit STAGE`: run a stage on a Ray cluster (Ray Jobs SDK) or as a KubeRay RayJob.

    phiray submit ingest --variant smoke --ray-address http://127.0.0.1:8265 [--run-dir D] [k=v ...]
    phiray submit pretrain --variant phi-1 --k8s --namespace ml [--wait] [--dry-run]

Both paths start from the same job spec (jobs/<stage>.<variant>.yaml, see phiray.cluster.spec); the
entrypoint is resolved and its config loaded here first, so a typo fails before anything is submitted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from phiray.cluster.kuberay import build_rayjob, to_yaml
from phiray.cluster.spec import (
    EXTRA_COMMANDS,
    JobSpec,
    SpecError,
    customise,
    dns_name,
    entrypoint_config,
    find_spec,
    load_spec,
    option_value,
    split_entrypoint,
)
from phiray.cluster.validate import crd_dir, validate_object
from phiray.stages import STAGES

log = logging.getLogger("phiray")
TERMINAL = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
# KubeRay's RayJob: status.jobDeploymentStatus ends in Complete or Failed; status.jobStatus is Ray's.
K8S_DONE = {"Complete", "Failed", "ValidationFailed"}
K8S_POLL_S = 5.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=[s.name for s in STAGES] + list(EXTRA_COMMANDS), help="Stage to run.")
    p.add_argument("--variant", default="smoke", help="Job spec jobs/<stage>.<variant>.yaml (default smoke).")
    p.add_argument("--spec", default=None, help="Job spec file (instead of --variant).")
    p.add_argument("--run-dir", default=None, help="Run dir on the cluster's shared storage (replaces the spec's).")
    p.add_argument("--preset", default=None, help="Preset (replaces the spec's).")
    p.add_argument("--config", default=None, help="YAML merged over the spec's config; sent inline as overrides.")
    p.add_argument("overrides", nargs="*", metavar="a.b.c=value", help="Config overrides, applied last.")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--ray-address",
        default=None,
        help="Ray dashboard URL, e.g. http://127.0.0.1:8265 (default $RAY_API_SERVER_ADDRESS).",
    )
    where.add_argument("--k8s", action="store_true", help="Create a KubeRay RayJob instead.")
    p.add_argument(
        "--working-dir",
        default=None,
        help="Directory uploaded as the job's working_dir "
        "(default: the spec's, relative to the checkout holding jobs/).",
    )
    p.add_argument("--submission-id", default=None, help="Ray submission id / RayJob name (default generated).")
    p.add_argument("--no-follow", action="store_true", help="Ray: submit and return without following logs.")
    p.add_argument("--timeout-s", type=float, default=None, help="Stop waiting after this long (the job goes on).")
    p.add_argument("--namespace", default="default", help="k8s namespace for the RayJob.")
    p.add_argument("--cluster", default=None, help="k8s: run on this existing RayCluster (clusterSelector).")
    p.add_argument("--image", default=None, help="k8s: container image for the inline cluster.")
    p.add_argument("--wait", action="store_true", help="k8s: poll the RayJob until it finishes.")
    p.add_argument("--dry-run", action="store_true", help="Print what would be submitted (the RayJob with --k8s).")
    _allow_trailing_overrides(p)


def _allow_trailing_overrides(p: argparse.ArgumentParser) -> None:
    """`phiray submit STAGE --variant x a.b=1`: argparse matches the positionals (stage, overrides) in
    one go, so overrides after an option would be refused. The sub-command parser parses intermixed."""
    plain = p.parse_known_args

    def intermixed(args=None, namespace=None):
        p.parse_known_args = plain  # parse_known_intermixed_args calls parse_known_args itself
        try:
            return p.parse_known_intermixed_args(args, namespace)
        finally:
            p.parse_known_args = intermixed

    p.parse_known_args = intermixed


def resolve_spec(args: argparse.Namespace) -> tuple[JobSpec, Path]:
    """The spec with the command line applied, validated; and the directory its relative paths use."""
    path = Path(args.spec) if args.spec else find_spec(args.stage, args.variant)
    spec = load_spec(path)
    if spec.stage != args.stage:
        raise SpecError(f"{path} runs {spec.stage!r}, not {args.stage!r}")
    base = path.resolve().parent.parent  # jobs/ sits in the checkout root
    spec = customise(spec, run_dir=args.run_dir, preset=args.preset, config_file=args.config, overrides=args.overrides)
    entrypoint_config(spec.entrypoint, working_dir=base)
    run_dir = option_value(split_entrypoint(spec.entrypoint), "--run-dir")
    if run_dir and not (run_dir.startswith("/") or "://" in run_dir):
        # The driver runs in a temporary copy of the working dir: a relative run dir would vanish with it.
        raise SpecError(f"--run-dir {run_dir!r}: give an absolute path on shared storage or a URI (s3://...)")
    return spec, base


def ray_runtime_env(spec: JobSpec, base: Path, working_dir: str | None) -> dict[str, Any]:
    env = dict(spec.runtime_env)
    target = working_dir or env.get("working_dir")
    if target and "://" not in str(target):
        target = Path(target)
        env["working_dir"] = str(target if target.is_absolute() or working_dir else (base / target).resolve())
    return env


def ray_submit_command(spec: JobSpec, address: str, runtime_env: dict[str, Any], submission_id: str) -> str:
    """The equivalent `ray job submit` command line."""
    parts = [
        "ray",
        "job",
        "submit",
        "--address",
        address,
        "--submission-id",
        submission_id,
        "--runtime-env-json",
        json.dumps(runtime_env, sort_keys=True),
        "--metadata-json",
        json.dumps(spec.job_metadata(), sort_keys=True),
    ]
    for flag, value in (
        ("--entrypoint-num-cpus", spec.entrypoint_num_cpus),
        ("--entrypoint-num-gpus", spec.entrypoint_num_gpus),
    ):
        if value is not None:
            parts += [flag, str(value)]
    if spec.entrypoint_resources:
        parts += ["--entrypoint-resources", json.dumps(spec.entrypoint_resources)]
    return shlex.join(parts) + " -- " + spec.entrypoint


async def _follow(client: Any, job_id: str, out) -> None:
    async for lines in client.tail_job_logs(job_id):
        out.write(lines)
        out.flush()


def wait_ray(client: Any, job_id: str, follow: bool, timeout_s: float | None, out=sys.stdout) -> str:
    """Follow the logs (the stream ends with the job), then poll the final status."""
    import aiohttp
    import requests

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if follow:
        try:
            asyncio.run(asyncio.wait_for(_follow(client, job_id, out), timeout_s))
        except asyncio.TimeoutError:
            pass
        except (aiohttp.ClientError, ConnectionError) as err:  # keep waiting: the job does not need us
            log.warning("phiray: log stream lost (%s); polling the status", err)
    while True:
        try:
            status = str(client.get_job_status(job_id).value)
        except requests.ConnectionError:
            status = ""
        if status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return status or "UNKNOWN"
        time.sleep(1.0)


def _submit(client: Any, spec: JobSpec, runtime_env: dict[str, Any], submission_id: str, attempts: int = 4) -> str:
    """submit_job, retried when a busy dashboard drops the connection. The submission id is fixed, so a
    retry after a request that did get through finds the job there instead of starting it twice."""
    import requests

    for attempt in range(attempts):
        try:
            return client.submit_job(
                entrypoint=spec.entrypoint,
                runtime_env=runtime_env,
                metadata=spec.job_metadata(),
                submission_id=submission_id,
                entrypoint_num_cpus=spec.entrypoint_num_cpus,
                entrypoint_num_gpus=spec.entrypoint_num_gpus,
                entrypoint_resources=spec.entrypoint_resources or None,
            )
        except requests.ConnectionError:
            if attempt == attempts - 1:
                raise
            log.warning("phiray: the Jobs API dropped the connection; retrying (%d/%d)", attempt + 1, attempts - 1)
            time.sleep(2.0 * (attempt + 1))
        except RuntimeError as err:
            if attempt and "already exists" in str(err):
                return submission_id
            raise
    raise AssertionError("unreachable")


def submit_ray(spec: JobSpec, base: Path, args: argparse.Namespace) -> int:
    address = args.ray_address or os.environ.get("RAY_API_SERVER_ADDRESS") or "http://127.0.0.1:8265"
    submission_id = args.submission_id or f"{dns_name('phiray', spec.stage, spec.variant)}-{secrets.token_hex(3)}"
    runtime_env = ray_runtime_env(spec, base, args.working_dir)
    if args.dry_run:
        print(ray_submit_command(spec, address, runtime_env, submission_id))
        return 0
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except AuthenticationError:
        print(
            "phiray: the cluster requires a Ray auth token: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN "
            "(or RAY_AUTH_TOKEN_PATH) to the cluster's token",
            file=sys.stderr,
        )
        return 2
    job_id = _submit(client, spec, runtime_env, submission_id)
    print(f"phiray: submitted {job_id} to {address}: {spec.entrypoint}", file=sys.stderr)
    if args.no_follow:
        return 0
    try:
        status = wait_ray(client, job_id, follow=True, timeout_s=args.timeout_s)
    except KeyboardInterrupt:
        print(f"\nphiray: stopped following; the job goes on (`ray job stop {job_id}` ends it)", file=sys.stderr)
        return 130
    info = client.get_job_info(job_id)
    print(
        f"phiray: job {job_id} {status}{': ' + info.message if status != 'SUCCEEDED' and info.message else ''}",
        file=sys.stderr,
    )
    return TERMINAL.get(status, 4)


# --------------------------------------------------------------------------- KubeRay


def rayjob_body(spec: JobSpec, args: argparse.Namespace) -> dict[str, Any]:
    name = args.submission_id or f"{dns_name('phiray', spec.stage, spec.variant, limit=40)}-{secrets.token_hex(3)}"
    body = build_rayjob(spec, name=name, namespace=args.namespace, cluster_name=args.cluster, image=args.image)
    if crd_dir().is_dir():  # the CRDs are not shipped with phiray; check when they are at hand
        errors = validate_object(body)
        if errors:
            raise SpecError(f"RayJob {name} does not validate against the KubeRay CRD: {errors[0]}")
    return body


def kube_api() -> Any:
    """CustomObjectsApi from $KUBECONFIG (read now: the client reads it only once, at import) or
    ~/.kube/config, else the pod's service account."""
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    except Exception as err:  # noqa: BLE001 - no kubeconfig: maybe we run inside a pod
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise SpecError(f"no Kubernetes credentials: kubeconfig: {err}; not in a pod either") from None
    return client.CustomObjectsApi()


def k8s_status(obj: dict[str, Any]) -> tuple[str, str]:
    status = obj.get("status") or {}
    return status.get("jobDeploymentStatus", ""), status.get("jobStatus", "")


def submit_k8s(spec: JobSpec, args: argparse.Namespace) -> int:
    body = rayjob_body(spec, args)
    if args.dry_run:
        print(to_yaml(body), end="")
        return 0
    api, name, ns = kube_api(), body["metadata"]["name"], args.namespace
    # This client version sends no Content-Type for custom objects; say what the body is.
    api.create_namespaced_custom_object(
        group="ray.io",
        version="v1",
        namespace=ns,
        plural="rayjobs",
        body=body,
        _headers={"Content-Type": "application/json"},
    )
    print(f"phiray: created RayJob {ns}/{name}: {spec.entrypoint}", file=sys.stderr)
    deadline = None if args.timeout_s is None else time.monotonic() + args.timeout_s
    while True:
        obj = api.get_namespaced_custom_object_status(
            group="ray.io", version="v1", namespace=ns, plural="rayjobs", name=name
        )
        deployment, job = k8s_status(obj)
        print(f"phiray: RayJob {name}: deployment={deployment or 'pending'} job={job or 'pending'}", file=sys.stderr)
        done = deployment in K8S_DONE
        if not args.wait or done or (deadline is not None and time.monotonic() > deadline):
            break
        time.sleep(K8S_POLL_S)
    if not done:
        return 0 if not args.wait else 4
    return 0 if deployment == "Complete" and job in ("SUCCEEDED", "") else 1


def main(args: argparse.Namespace) -> int:
    try:
        spec, base = resolve_spec(args)
        return submit_k8s(spec, args) if args.k8s else submit_ray(spec, base, args)
    except SpecError as err:
        print(f"phiray: submit: {err}", file=sys.stderr)
        return 2
