"""Offline validation of Kubernetes objects: KubeRay custom resources against their CRDs' `v1`
openAPIV3Schema (made strict: an unknown field is an error, as with `kubectl apply --validate=strict`),
core objects against the `kubernetes` client's models, plus the KubeRay rules a schema cannot express.

Each check returns a list of problems (`path: message`); empty means valid.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from phiray.cluster.spec import REPO

CRD_FILES = {
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayService": "ray.io_rayservices.yaml",
}


def crd_dir() -> Path:
    """$PHIRAY_KUBERAY_CRDS, else ../shared/kuberay-crds beside the checkout."""
    return Path(os.environ.get("PHIRAY_KUBERAY_CRDS", REPO.parent / "shared" / "kuberay-crds"))


def _strict(schema: Any) -> Any:
    """Structural schemas prune unknown fields silently; a manifest with a typo'd field should fail."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=None)
def crd_validator(kind: str, directory: str | None = None):
    import jsonschema

    path = Path(directory or crd_dir()) / CRD_FILES[kind]
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 1 MB each
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    return jsonschema.Draft7Validator(schema)


# --------------------------------------------------------------------------- core kinds


def _models():
    from kubernetes.client import models

    return models


def check_model(data: Any, type_name: str, path: str = "") -> list[str]:
    """``data`` (parsed YAML) against a kubernetes-client type name such as ``V1PodSpec``,
    ``list[V1Container]`` or ``dict(str, str)``: unknown fields, wrong types, missing required fields."""
    if type_name == "object":
        return []
    scalar = {"str": str, "bool": bool, "float": (int, float), "datetime": str, "date": str}
    if type_name == "int":
        ok = isinstance(data, int) and not isinstance(data, bool)
        return [] if ok else [f"{path}: expected an integer, got {data!r}"]
    if type_name in scalar:
        return [] if isinstance(data, scalar[type_name]) else [f"{path}: expected {type_name}, got {data!r}"]
    # Client versions spell containers `list[T]`/`dict(str, T)` (older) or `List[T]`/`Dict[str, T]`.
    if type_name[:5].lower() == "list[":
        if not isinstance(data, list):
            return [f"{path}: expected a list"]
        return [e for i, item in enumerate(data) for e in check_model(item, type_name[5:-1], f"{path}[{i}]")]
    if type_name[:5].lower() in ("dict(", "dict["):
        if not isinstance(data, dict):
            return [f"{path}: expected a mapping"]
        value_type = type_name[5:-1].split(",", 1)[1].strip()
        return [e for k, v in data.items() for e in check_model(v, value_type, f"{path}.{k}")]
    cls = getattr(_models(), type_name)
    if not isinstance(data, dict):
        return [f"{path}: expected a {type_name} mapping"]
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    errors = []
    for key, value in data.items():
        if key not in by_key:
            errors.append(f"{path}.{key}: unknown field for {type_name}")
            continue
        errors += check_model(value, cls.openapi_types[by_key[key]], f"{path}.{key}")
    if not hasattr(cls, "model_validate"):  # older clients: the setters enforce required fields and enums
        try:
            cls(**{by_key[k]: v for k, v in data.items() if k in by_key})
        except (ValueError, TypeError) as err:
            errors.append(f"{path}: {type_name}: {err}")
    return errors


def model_errors(data: Any, type_name: str, path: str = "") -> list[str]:
    """:func:`check_model`, then (newer clients, whose models are pydantic) the model's own validation:
    required fields, enums, strict types."""
    errors = check_model(data, type_name, path)
    cls = getattr(_models(), type_name)
    if errors or not hasattr(cls, "model_validate"):
        return errors
    from pydantic import ValidationError

    try:
        cls.model_validate(data)
    except ValidationError as err:
        errors += [f"{path}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
    return errors


def core_errors(doc: dict[str, Any]) -> list[str]:
    """A core object (ServiceAccount, PersistentVolumeClaim, NetworkPolicy, ...) against its V1 model."""
    api_version, kind = doc.get("apiVersion", ""), doc.get("kind", "")
    version = api_version.split("/")[-1]
    type_name = f"{version.capitalize()}{kind}"
    if not hasattr(_models(), type_name):
        return [f"{kind}: no model {type_name} for apiVersion {api_version!r}"]
    return model_errors(doc, type_name, kind)


# --------------------------------------------------------------------------- KubeRay


def _cluster_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = doc.get("spec") or {}
    key = {"RayCluster": None, "RayJob": "rayClusterSpec", "RayService": "rayClusterConfig"}[doc["kind"]]
    cluster = spec if key is None else spec.get(key)
    return [(f"spec.{key}" if key else "spec", cluster)] if cluster else []


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def cluster_rules(where: str, cluster: dict[str, Any]) -> list[str]:
    """KubeRay's ValidateRayClusterSpec (the parts that apply here), plus pod templates against V1 models
    and two phiray rules: replicas within bounds, rayStartParams values as strings."""
    errors: list[str] = []
    groups = cluster.get("workerGroupSpecs", [])
    names = [g["groupName"] for g in groups]
    if len(set(names)) != len(names):
        errors.append(f"{where}.workerGroupSpecs: duplicate groupName")
    for g in groups:
        low, high = g.get("minReplicas", 0), g.get("maxReplicas", 2**31)
        if low > high or not low <= g.get("replicas", low) <= high:
            errors.append(f"{where}.{g['groupName']}: needs minReplicas <= replicas <= maxReplicas")
    for name, group in [("headGroupSpec", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in groups]:
        errors += model_errors(group["template"], "V1PodTemplateSpec", f"{where}.{name}.template")
        params = group.get("rayStartParams", {})
        errors += [
            f"{where}.{name}.rayStartParams.{k}: values must be strings"
            for k, v in params.items()
            if not isinstance(v, str)
        ]
        if group.get("resources") and any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            errors.append(f"{where}.{name}: resources set in both rayStartParams and resources")
        if "labels" in params:
            errors.append(f"{where}.{name}.rayStartParams.labels: use the group's labels field")
    if (cluster.get("authOptions") or {}).get("mode") == "token" and _version(str(cluster.get("rayVersion", "0"))) < (
        2,
        52,
        0,
    ):
        errors.append(f"{where}.authOptions: token mode needs rayVersion >= 2.52.0")
    return errors


def kuberay_rules(doc: dict[str, Any]) -> list[str]:
    """What KubeRay's operator rejects beyond the schema (ray-operator/controllers/ray/utils/validation.go)."""
    errors: list[str] = []
    spec = doc.get("spec") or {}
    name_limit = {"RayCluster": 53, "RayJob": 47, "RayService": 47}[doc["kind"]]  # room for KubeRay's suffixes
    name = doc["metadata"].get("name", "")
    if len(name) > name_limit or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        errors.append(f"metadata.name: {name!r} must be a DNS-1035 label of at most {name_limit} characters")
    for where, cluster in _cluster_specs(doc):
        errors += cluster_rules(where, cluster)
    if doc["kind"] == "RayJob":
        selector = spec.get("clusterSelector") or {}
        if not spec.get("rayClusterSpec") and not selector:
            errors.append("spec: one of rayClusterSpec or clusterSelector must be set")
        if selector and not selector.get("ray.io/cluster"):
            errors.append("spec.clusterSelector: needs a non-empty ray.io/cluster")
        if selector and spec.get("backoffLimit", 0) > 0:
            errors.append("spec.backoffLimit: incompatible with clusterSelector")
        if not spec.get("shutdownAfterJobFinishes") and spec.get("ttlSecondsAfterFinished", 0) > 0:
            errors.append("spec.ttlSecondsAfterFinished: needs shutdownAfterJobFinishes")
        if spec.get("activeDeadlineSeconds", 1) <= 0:
            errors.append("spec.activeDeadlineSeconds: must be positive")
        if "entrypointResources" in spec:
            try:
                json.loads(spec["entrypointResources"])
            except ValueError:
                errors.append("spec.entrypointResources: not JSON")
        if not isinstance(yaml.safe_load(spec.get("runtimeEnvYAML") or "{}"), dict):
            errors.append("spec.runtimeEnvYAML: not a YAML mapping")
    if doc["kind"] == "RayService":
        from ray.serve.schema import ServeDeploySchema

        try:
            ServeDeploySchema.model_validate(yaml.safe_load(spec.get("serveConfigV2") or "{}"))
        except Exception as err:  # noqa: BLE001 - pydantic v1/v2 raise different types
            errors.append(f"spec.serveConfigV2: {str(err).splitlines()[0]}")
    return errors


def validate_object(doc: dict[str, Any]) -> list[str]:
    """Every problem with one Kubernetes object (custom or core)."""
    kind = doc.get("kind", "")
    if kind not in CRD_FILES:
        name = (doc.get("metadata") or {}).get("name", "")
        valid_name = re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
        return ([] if valid_name else [f"metadata.name: {name!r} is not a DNS-1123 label"]) + core_errors(doc)
    errors = [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in crd_validator(kind, str(crd_dir())).iter_errors(doc)
    ]
    errors += model_errors(doc.get("metadata", {}), "V1ObjectMeta", "metadata")
    # KubeRay's rules assume a schema-valid object.
    return errors + (kuberay_rules(doc) if not errors else [])
