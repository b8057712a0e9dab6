"""Job specs: one YAML file per stage and variant (`jobs/<stage>.<variant>.yaml`).

A spec holds exactly what both submission paths need, named as the Ray Jobs SDK names it::

    stage: pretrain                     # a stage of phiray.stages.STAGES, or serve / run
    variant: phi-1
    description: Pretrain phi-1-small (350M) on CodeTextbook, 8 x A100.
    entrypoint: phiray pretrain --preset phi-1 --run-dir /runs/phi-1
    runtime_env: {working_dir: ., env_vars: {TOKENIZERS_PARALLELISM: "false"}}
    entrypoint_num_cpus: 1
    entrypoint_num_gpus: 0
    entrypoint_resources: {}
    metadata: {project: phiray}
    k8s: {worker_groups: {gpu: {replicas: 1, minReplicas: 1, maxReplicas: 1}}, ttl_seconds_after_finished: 3600}

`JobSubmissionClient.submit_job(entrypoint=..., runtime_env=..., entrypoint_num_cpus=..., ...)` takes
the fields as they are; a RayJob takes them as `entrypoint`, `runtimeEnvYAML`, `entrypointNumCpus`,
`entrypointNumGpus`, `entrypointResources` (JSON) and `metadata`, plus the `k8s` block. There is no
`entrypoint_memory`: RayJob has no field for it, and a spec must mean the same thing on both paths.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from phiray.config import ConfigError, RunConfig, load_config
from phiray.stages import STAGE_BY_NAME

REPO = Path(__file__).resolve().parents[2]
# Commands besides the stages that a spec may run (they take the same config arguments).
EXTRA_COMMANDS = ("serve", "run")
# A config override on the command line: `a.b.c=value`.
OVERRIDE = re.compile(r"^[A-Za-z_][\w-]*(\.[\w-]+)*=")


class SpecError(ValueError):
    """A job spec that cannot be submitted, phrased as one line naming the file and the field."""


class GroupScale(BaseModel):
    """Replica bounds for one worker group of the RayCluster a RayJob creates."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    replicas: int | None = Field(None, ge=0, description="Initial replicas.")
    minReplicas: int | None = Field(None, ge=0, description="Autoscaler lower bound.")
    maxReplicas: int | None = Field(None, ge=0, description="Autoscaler upper bound.")


class K8sOptions(BaseModel):
    """How the spec becomes a RayJob (ignored by the Ray Jobs path)."""

    model_config = ConfigDict(extra="forbid")
    worker_groups: dict[str, GroupScale] = Field(
        default_factory=dict, description="Per worker group replica bounds over k8s/ray-cluster.phiray.yaml."
    )
    shutdown_after_job_finishes: bool = Field(True, description="Delete the job's RayCluster when the job ends.")
    ttl_seconds_after_finished: int = Field(3600, ge=0, description="Keep the finished RayJob (and cluster) this long.")
    active_deadline_seconds: int | None = Field(None, ge=1, description="Fail the job after this long.")
    backoff_limit: int = Field(0, ge=0, description="Whole-job retries (each on a fresh cluster).")


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: str = Field(description="Stage (phiray.stages.STAGES) or command (serve, run) the job runs.")
    variant: str = Field(description="Variant name: smoke (tiny, CPU) or a preset scale, e.g. phi-1.")
    description: str = Field("", description="One line for humans.")
    entrypoint: str = Field(description="Shell command: `phiray <stage> --preset P --run-dir D [k=v ...]`.")
    runtime_env: dict[str, Any] = Field(default_factory=dict, description="Ray runtime_env (working_dir, env_vars).")
    entrypoint_num_cpus: float | None = Field(None, ge=0, description="CPUs reserved for the driver.")
    entrypoint_num_gpus: float | None = Field(None, ge=0, description="GPUs reserved for the driver.")
    entrypoint_resources: dict[str, float] = Field(default_factory=dict, description="Custom resources for the driver.")
    metadata: dict[str, str] = Field(default_factory=dict, description="Job metadata (strings).")
    k8s: K8sOptions = Field(default_factory=K8sOptions, description="RayJob options.")

    @property
    def name(self) -> str:
        return f"{self.stage}.{self.variant}"

    def job_metadata(self) -> dict[str, str]:
        return {"project": "phiray", "stage": self.stage, "variant": self.variant, **self.metadata}


def load_spec(path: str | Path) -> JobSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SpecError(f"{path}: cannot read ({str(err).splitlines()[0]})") from None
    try:
        spec = JobSpec.model_validate(data or {})
    except ValidationError as err:
        first = err.errors()[0]
        raise SpecError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if path.name != f"{spec.name}.yaml":
        raise SpecError(f"{path}: file name must be {spec.name}.yaml (stage.variant)")
    return spec


def find_spec(stage: str, variant: str, jobs_dir: Path | None = None) -> Path:
    jobs_dir = jobs_dir or REPO / "jobs"
    path = jobs_dir / f"{stage}.{variant}.yaml"
    if not path.is_file():
        have = sorted(p.name[len(stage) + 1 : -5] for p in jobs_dir.glob(f"{stage}.*.yaml"))
        raise SpecError(f"no job spec {path} (variants of {stage}: {', '.join(have) or 'none'})")
    return path


# --------------------------------------------------------------------------- entrypoints


def split_entrypoint(entrypoint: str) -> list[str]:
    tokens = shlex.split(entrypoint)
    if len(tokens) < 2 or tokens[0] != "phiray":
        raise SpecError(f"entrypoint {entrypoint!r}: expected `phiray <stage> ...`")
    return tokens


def _option_index(tokens: list[str], option: str) -> int | None:
    for i, token in enumerate(tokens):
        if token == option or token.startswith(option + "="):
            return i
    return None


def set_option(tokens: list[str], option: str, value: str) -> list[str]:
    """Replace ``option``'s value, or insert it right after the command (before the overrides)."""
    tokens = list(tokens)
    i = _option_index(tokens, option)
    if i is None:
        tokens[2:2] = [option, value]
    elif "=" in tokens[i]:
        tokens[i] = f"{option}={value}"
    else:
        tokens[i + 1] = value
    return tokens


def option_value(tokens: list[str], option: str) -> str | None:
    i = _option_index(tokens, option)
    if i is None:
        return None
    return tokens[i].split("=", 1)[1] if "=" in tokens[i] else tokens[i + 1]


def flatten_config(data: dict[str, Any], prefix: str = "") -> list[str]:
    """A config mapping as `a.b.c=value` overrides (values as JSON, which the override parser reads as
    YAML). Leaves only, so a preset's other keys in the same section survive, as with --config."""
    out: list[str] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(flatten_config(value, path + "."))
        else:
            out.append(f"{path}={json.dumps(value, separators=(',', ':'))}")
    return out


def config_overrides(config_file: str | Path) -> list[str]:
    """Read a --config file and return it as overrides, so it travels inside the entrypoint: it then
    reaches a Ray cluster or a RayJob without shipping the file (the resolved config is recorded in
    the run dir's config.yaml anyway)."""
    path = Path(config_file)
    if not path.is_file():
        raise SpecError(f"--config: no such file {str(path)!r}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise SpecError(f"--config {path}: expected a mapping at the top level")
    return flatten_config(data)


def split_overrides(tokens: list[str]) -> tuple[list[str], list[str]]:
    """(`phiray <command> [options]`, trailing `a.b=value` overrides) of an entrypoint's tokens. An option
    takes the next token as its value unless that looks like another option or an override."""
    i = 2
    while i < len(tokens) and tokens[i].startswith("-"):
        takes_value = (
            "=" not in tokens[i]
            and i + 1 < len(tokens)
            and not tokens[i + 1].startswith("-")
            and not OVERRIDE.match(tokens[i + 1])
        )
        i += 2 if takes_value else 1
    return tokens[:i], tokens[i:]


def customise(
    spec: JobSpec,
    run_dir: str | None = None,
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    config_root: str | None = None,
) -> JobSpec:
    """The spec with its entrypoint's run dir / preset replaced, then ``config_file`` (inlined as
    overrides: the cluster need not have the file) and ``overrides`` appended, so they apply last.
    ``config_root``: make a relative ``--config`` absolute under it (where the image holds the repo)."""
    command, spec_overrides = split_overrides(split_entrypoint(spec.entrypoint))
    if run_dir:
        command = set_option(command, "--run-dir", run_dir)
    if preset:
        command = set_option(command, "--preset", preset)
    relative = option_value(command, "--config")
    if config_root and relative and not relative.startswith("/"):
        command = set_option(command, "--config", f"{config_root.rstrip('/')}/{relative}")
    inlined = config_overrides(config_file) if config_file else []
    tokens = command + spec_overrides + inlined + list(overrides)
    return spec.model_copy(update={"entrypoint": shlex.join(tokens)})


def entrypoint_config(entrypoint: str, working_dir: Path | None = None) -> tuple[str, RunConfig]:
    """(command, resolved config) of a `phiray <command> ...` entrypoint, exactly as the CLI resolves
    it: fails (SpecError) on an unknown command, option or config key, before anything is submitted."""
    from phiray.cli import build_parser  # cli builds its parser from cluster.submit, which imports this module

    tokens = split_entrypoint(entrypoint)
    command = tokens[1]
    if command not in STAGE_BY_NAME and command not in EXTRA_COMMANDS:
        raise SpecError(
            f"entrypoint {entrypoint!r}: {command!r} is not a phiray stage "
            f"(known: {', '.join(list(STAGE_BY_NAME) + list(EXTRA_COMMANDS))})"
        )
    parser = build_parser()
    parser.exit_on_error = False
    try:
        args, unknown = parser.parse_known_args(tokens[1:])
    except (SystemExit, Exception) as err:  # argparse exits on a bad option
        raise SpecError(f"entrypoint {entrypoint!r}: cannot parse ({err})") from None
    if unknown:
        raise SpecError(f"entrypoint {entrypoint!r}: unknown arguments {unknown}")
    config_file = getattr(args, "config", None)
    if config_file and working_dir is not None and not Path(config_file).is_absolute():
        config_file = working_dir / config_file
    try:
        cfg = load_config(
            preset=getattr(args, "preset", None) or "tiny",
            config_file=config_file,
            overrides=getattr(args, "overrides", None) or [],
        )
    except ConfigError as err:
        raise SpecError(f"entrypoint {entrypoint!r}: config error: {err}") from None
    return command, cfg


def dns_name(*parts: str, limit: int = 47) -> str:
    """A lowercase DNS name from ``parts`` (callers start it with a letter: KubeRay wants DNS-1035). KubeRay
    appends suffixes to a RayJob's name for its cluster and services, so it allows 47 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return re.sub(r"-{2,}", "-", name)[:limit].rstrip("-")
