"""The evaluator deployment (sandboxed execution); the model deployment is Ray Serve LLM's (phiray.serve.app).

It returns plain dicts; a request it refuses comes back as `{"error": {...}, "status": 4xx}` so the
ingress can answer it as an OpenAI error without unwrapping Ray exceptions.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache
from typing import Any

from ray import serve

from phiray.config import SandboxConfig
from phiray.evals.benchmarks import load_benchmark
from phiray.serve.protocol import OpenAIError

log = logging.getLogger("phiray")


def _error(err: OpenAIError) -> dict[str, Any]:
    return {**err.body(), "status": err.status}


@serve.deployment(name="evaluator")
class Evaluator:
    """Runs candidate code against tests in phiray's sandbox; its replicas and CPUs are its own."""

    def __init__(self, sandbox: SandboxConfig) -> None:
        self.sandbox_cfg = sandbox
        self._sandbox = None

    def _get_sandbox(self):
        if self._sandbox is None:
            from phiray.sandbox import Sandbox  # imported here: the model side must not depend on it

            self._sandbox = Sandbox(self.sandbox_cfg)
        return self._sandbox

    async def evaluate(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            code, tests, entry_point = _program(request)
            sandbox = self._get_sandbox()
        except OpenAIError as err:
            return _error(err)
        except ImportError as err:
            return _error(OpenAIError(503, f"the sandbox is not available: {err}", type="server_error"))
        verdict = await asyncio.to_thread(sandbox.check, code, tests, entry_point, request.get("timeout_s"))
        return {
            "object": "evaluation",
            "task_id": request.get("task_id"),
            "passed": bool(verdict.passed),
            "status": verdict.status,
            "detail": verdict.detail,
            "duration_s": verdict.duration_s,
        }


def _program(request: dict[str, Any]) -> tuple[str, str, str | None]:
    if request.get("task_id") is None:
        return request["code"], request["tests"], request.get("entry_point")
    task = benchmark_task(request["task_id"])
    return task.program(request["completion"]), task.tests, task.entry_point


def benchmark_task(task_id: str):
    """A phiray.evals Task by id: "HumanEval/0", "mbpp/11", "mbpp-sanitized/11" (case-insensitive)."""
    name = task_id.partition("/")[0].lower()
    if name in ("humaneval", "mbpp", "mbpp-sanitized"):
        try:
            task = _tasks(name).get(task_id.lower())
        except FileNotFoundError as err:
            raise OpenAIError(404, str(err), param="task_id", code="task_not_found") from None
        if task is not None:
            return task
    raise OpenAIError(
        404,
        f"unknown benchmark task {task_id!r} (HumanEval/<n>, mbpp/<id>, mbpp-sanitized/<id>)",
        param="task_id",
        code="task_not_found",
    )


@lru_cache(maxsize=4)
def _tasks(name: str) -> dict[str, Any]:
    return {t.task_id.lower(): t for t in load_benchmark(name, mbpp_split="all")}
