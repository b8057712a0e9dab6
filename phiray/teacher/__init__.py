"""Teachers: LLM clients (any OpenAI-compatible endpoint) and an offline procedural generator.

from phiray.teacher import make_teacher, Request
teacher = make_teacher(cfg.teacher, cache_dir="/tmp/cache")
[resp] = teacher.complete([Request(key="a", messages=[{"role": "user", "content": "hi"}])])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phiray.teacher.base import Request, Response, Teacher, merge_stats, new_stats, request_hash

if TYPE_CHECKING:
    from phiray.config import TeacherConfig
    from phiray.rundir import FsPath

__all__ = ["Request", "Response", "Teacher", "make_teacher", "merge_stats", "new_stats", "request_hash"]


def make_teacher(cfg: "TeacherConfig", cache_dir: "str | FsPath | None" = None) -> Teacher:
    """The teacher ``cfg.kind`` names; ``cache_dir`` (a path, URI or ``FsPath``) enables the persistent request
    cache of the OpenAI and vLLM teachers (the procedural teacher is deterministic and needs none)."""
    if cfg.kind == "openai":
        from phiray.teacher.openai_teacher import OpenAITeacher

        return OpenAITeacher(cfg, cache_dir=cache_dir if cfg.cache else None)
    if cfg.kind == "vllm":
        from phiray.teacher.vllm_teacher import VLLMTeacher

        return VLLMTeacher(cfg, cache_dir=cache_dir if cfg.cache else None)
    if cfg.kind == "procedural":
        from phiray.teacher.procedural import ProceduralTeacher

        return ProceduralTeacher(cfg)
    raise ValueError(f"teacher.kind: unknown teacher {cfg.kind!r}")
