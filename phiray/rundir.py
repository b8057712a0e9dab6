"""The run directory: where every stage reads its inputs and writes its outputs.

A run is a directory on any ``pyarrow.fs`` filesystem: a local path, ``file:///abs/path``,
``s3://bucket/runs/x``, ``gs://…``, or a ``SubTreeFileSystem`` handed in by code. Each stage writes
under ``<run>/<stage>/`` and finishes by writing ``<run>/<stage>/_manifest.json`` last and
atomically: a stage is complete exactly when its manifest exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import platform
import posixpath
import shutil
import tempfile
import uuid
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

MANIFEST = "_manifest.json"
CONFIG_FILE = "config.yaml"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """Versions recorded in every manifest (imported lazily: reading a manifest should stay cheap)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("phiray", "ray", "torch", "transformers", "deepspeed"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


class Manifest(BaseModel):
    """What a stage did. Stages fill rows/metrics/headline/outputs; the runner fills the rest."""

    model_config = ConfigDict(extra="allow")

    stage: str
    config_hash: str = ""
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    inputs: dict[str, str] = Field(default_factory=dict, description="Upstream stage -> run_id it consumed.")
    rows: dict[str, int] = Field(default_factory=dict, description="Row counts, e.g. {'in': 900, 'kept': 700}.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Everything measured, JSON-serialisable.")
    headline: dict[str, Any] = Field(default_factory=dict, description="The few metrics `phiray status` shows.")
    outputs: list[str] = Field(default_factory=list, description="Paths (relative to the run) the stage wrote.")
    started_at: str = ""
    finished_at: str = ""
    wall_time_s: float = 0.0
    versions: dict[str, str] = Field(default_factory=dict)
    placement: dict[str, Any] = Field(
        default_factory=dict,
        description="Where the work ran: driver (node, peak "
        "RSS), tasks/actors by node with the resources they asked for (phiray.placement).",
    )


def _is_uri(location: str) -> bool:
    return "://" in location


class RunDir:
    """A run directory on a ``pyarrow.fs.FileSystem``; all paths are relative to its root."""

    def __init__(self, location: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None):
        location = os.fspath(location)
        if filesystem is not None:
            self.fs, self.root = filesystem, location.rstrip("/") or "/"
        else:
            self.fs, self.root = resolve_fs_path(location)
        self.location = location

    def __repr__(self) -> str:
        return f"RunDir({self.location!r})"

    # ----------------------------------------------------------------- paths
    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        """Filesystem path (for ``self.fs`` and Ray Data's ``filesystem=`` argument)."""
        return posixpath.join(self.root, *parts) if parts else self.root

    def uri(self, *parts: str) -> str | None:
        """``s3://bucket/run/<parts>`` (any ``scheme://`` the run dir was given as) for tools that take a URI
        rather than a filesystem (Ray Data LLM's ``model_source``); None for a run dir on a local disk."""
        if self.is_local or not _is_uri(self.location):
            return None
        return posixpath.join(self.location.rstrip("/"), *parts)

    def fs_path(self, *parts: str) -> FsPath:
        """A picklable (filesystem, path) for workers on any node (e.g. a request cache's directory)."""
        return FsPath(self.fs, self.path(*parts))

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def makedirs(self, *parts: str) -> str:
        path = self.path(*parts)
        self.fs.create_dir(path, recursive=True)
        return path

    def listdir(self, *parts: str) -> list[str]:
        if not self.exists(*parts):
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path(*parts)))
        return sorted(posixpath.basename(i.path) for i in infos)

    def parquet_files(self, *parts: str) -> list[str]:
        """Filesystem paths of the Parquet files of ``<parts>`` (a stage's output dataset), sorted."""
        return parquet_files(self.fs, self.path(*parts))

    def read_table(self, *parts: str, columns: list[str] | None = None) -> pa.Table:
        """A stage's Parquet output (``<stage>/<name>``) read whole on the driver, for outputs small enough to
        hold (labels, splits, report samples): only the ``columns`` it has; an empty table when it has no files."""
        import pyarrow.dataset as pads  # imports pandas (~1 s): every phiray command imports this module

        files = self.parquet_files(*parts)
        if not files:
            return pa.table({})
        ds = pads.dataset(files, filesystem=self.fs, format="parquet")
        return ds.to_table(columns=None if columns is None else [c for c in columns if c in ds.schema.names])

    def remove(self, *parts: str) -> None:
        path = self.path(*parts)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(path)

    # ----------------------------------------------------------------- files
    def write_bytes(self, relpath: str, data: bytes, atomic: bool = True) -> None:
        """Write a file; on a local disk via a temporary file + rename (object stores put atomically)."""
        path = self.path(relpath)
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        target = f"{path}.tmp-{uuid.uuid4().hex[:8]}" if atomic and self.is_local else path
        with self.fs.open_output_stream(target) as out:
            out.write(data)
        if target != path:
            self.fs.move(target, path)

    def write_text(self, relpath: str, text: str, atomic: bool = True) -> None:
        self.write_bytes(relpath, text.encode(), atomic=atomic)

    def write_json(self, relpath: str, obj: Any) -> None:
        self.write_text(relpath, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def read_bytes(self, relpath: str) -> bytes:
        with self.fs.open_input_stream(self.path(relpath)) as stream:
            return stream.read()

    def read_text(self, relpath: str) -> str:
        return self.read_bytes(relpath).decode()

    def read_json(self, relpath: str) -> Any:
        return json.loads(self.read_text(relpath))

    # ----------------------------------------------------------------- local staging
    @contextlib.contextmanager
    def local_dir(self, relpath: str, upload: bool = True, download: bool = True) -> Iterator[str]:
        """A local directory mirroring ``relpath``: the path itself on a local run dir; otherwise a
        temporary copy, downloaded first and uploaded back on success (for libraries that need
        real files: tokenizers, checkpoints, sklearn models)."""
        if self.is_local:
            yield self.makedirs(relpath)
            return
        tmp = tempfile.mkdtemp(prefix="phiray-")
        try:
            if download and self.exists(relpath):
                pafs.copy_files(
                    self.path(relpath), tmp, source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem()
                )
            yield tmp
            if upload:
                self.makedirs(relpath)
                pafs.copy_files(
                    tmp, self.path(relpath), source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # ----------------------------------------------------------------- manifests
    def manifest_path(self, stage: str) -> str:
        return posixpath.join(stage, MANIFEST)

    def read_manifest(self, stage: str) -> Manifest | None:
        if not self.exists(self.manifest_path(stage)):
            return None
        return Manifest.model_validate_json(self.read_bytes(self.manifest_path(stage)))

    def write_manifest(self, manifest: Manifest) -> None:
        """Written last and atomically: its presence is what marks the stage complete."""
        self.write_bytes(self.manifest_path(manifest.stage), manifest.model_dump_json(indent=2).encode())

    def invalidate(self, stage: str) -> None:
        """Remove a stage's manifest first (so a crash leaves it incomplete), then its outputs."""
        if self.exists(self.manifest_path(stage)):
            self.fs.delete_file(self.path(self.manifest_path(stage)))
        self.remove(stage)

    def stage_started(self) -> str:
        return _now()

    def finish(
        self,
        manifest: Manifest,
        *,
        config_hash: str,
        inputs: dict[str, str],
        started_at: str,
        wall_time_s: float,
        placement: dict[str, Any] | None = None,
    ) -> Manifest:
        manifest.config_hash = config_hash
        if placement is not None:
            manifest.placement = placement
        manifest.inputs = inputs
        manifest.started_at = started_at
        manifest.finished_at = _now()
        manifest.wall_time_s = round(wall_time_s, 3)
        manifest.versions = versions()
        self.write_manifest(manifest)
        return manifest


@dataclasses.dataclass(frozen=True)
class FsPath:
    """A directory on a ``pyarrow.fs`` filesystem, picklable: how a worker on another node is handed a
    place in the run directory (``RunDir.fs_path``) without re-parsing a URI."""

    fs: pafs.FileSystem
    path: str


def parquet_files(fs: pafs.FileSystem, path: str) -> list[str]:
    """``path`` itself when it is a Parquet file, every ``*.parquet`` below it (sorted) when it is a directory,
    nothing when it does not exist: how every reader finds a dataset's files (``ray.data`` writes part files)."""
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        return [path] if path.endswith(".parquet") else []
    if info.type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet"))


def resolve_fs_path(location: str | os.PathLike[str] | FsPath) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for an ``FsPath``, a URI (``s3://…``, ``file://…``) or a local path."""
    if isinstance(location, FsPath):
        return location.fs, location.path.rstrip("/") or "/"
    location = os.fspath(location)
    if _is_uri(location):
        fs, path = pafs.FileSystem.from_uri(location)
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(location)
