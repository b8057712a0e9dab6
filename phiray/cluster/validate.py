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

CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}


def crd_dir() -> Path:
    """$PHIRAY_KUBERAY_CRDS, else ../shared/kuberay-crds beside the checkout."""
    return Path(os.environ.get("PHIRAY_KUBERAY_CRDS", REPO.parent / "shared" / "kuberay-crds"))


def _strict(schema: Any) -> Any:
    """Structural schemas prune unknown fields silently; a manifest with a typo'd field should fail."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out \
                and not out.get("x-kubernetes-preserve-unknown-fields"):
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


def kuberay_rules(doc: dict[str, Any]) -> list[str]:
    """What KubeRay's operator/webhook rejects (or silently misbehaves on) beyond the schema."""
    errors: list[str] = []
    spec = doc.get("spec") or {}
    for where, cluster in _cluster_specs(doc):
        groups = cluster.get("workerGroupSpecs", [])
        names = [g["groupName"] for g in groups]
        if len(set(names)) != len(names):
            errors.append(f"{where}.workerGroupSpecs: duplicate groupName")
        for g in groups:
            low, high = g.get("minReplicas", 0), g.get("maxReplicas", 2**31)
            if not low <= g.get("replicas", low) <= high or low > high:
                errors.append(f"{where}.{g['groupName']}: needs minReplicas <= replicas <= maxReplicas")
        pods = [("headGroupSpec", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in groups]
        for name, group in pods:
            errors += model_errors(group["template"], "V1PodTemplateSpec", f"{where}.{name}.template")
            for key, value in group.get("rayStartParams", {}).items():
                if not isinstance(value, str):
                    errors.append(f"{where}.{name}.rayStartParams.{key}: values must be strings")
    if doc["kind"] == "RayJob":
        if spec.get("clusterSelector") and spec.get("rayClusterSpec"):
            errors.append("spec: set rayClusterSpec or clusterSelector, not both")
        if not spec.get("clusterSelector") and not spec.get("rayClusterSpec"):
            errors.append("spec: needs rayClusterSpec or clusterSelector")
        if spec.get("clusterSelector") and spec.get("shutdownAfterJobFinishes"):
            errors.append("spec: shutdownAfterJobFinishes cannot delete a cluster chosen by clusterSelector")
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
    name = (doc.get("metadata") or {}).get("name", "")
    errors = [] if re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63 else \
        [f"metadata.name: {name!r} is not a DNS-1123 label"]
    if kind not in CRD_FILES:
        return errors + core_errors(doc)
    errors += [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
               for e in crd_validator(kind, str(crd_dir())).iter_errors(doc)]
    errors += model_errors(doc.get("metadata", {}), "V1ObjectMeta", "metadata")
    return errors + (kuberay_rules(doc) if not errors else [])
