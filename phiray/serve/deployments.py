"""The two worker deployments: the model (dynamic batching) and the evaluator (sandboxed execution).

Both return plain dicts; a request they refuse comes back as `{"error": {...}, "status": 4xx}` so the
ingress can answer it as an OpenAI error without unwrapping Ray exceptions.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, AsyncIterator

from ray import serve

from phiray.config import SandboxConfig, ServeConfig
from phiray.serve.protocol import ChatMessage, OpenAIError, render_chat

log = logging.getLogger("phiray")


@dataclass
class _Job:
    prompts: list[str]
    params: Any  # phiray.model.generate.SamplingParams

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.params.n


def _job_rows(jobs: list[_Job]) -> int:
    return sum(job.rows for job in jobs)


def _error(err: OpenAIError) -> dict[str, Any]:
    return {**err.body(), "status": err.status}


@serve.deployment(name="model")
class ModelServer:
    """A Generator behind two batched entry points: `complete` (whole answers) and `stream` (deltas)."""

    def __init__(self, cfg: ServeConfig) -> None:
        from phiray.model.generate import Generator

        self.cfg = cfg
        self.batches = self.rows = 0  # served so far: rows / batches is the mean batch size
        self.engine = Generator.load(cfg.model, device="cuda" if cfg.use_gpu else "cpu", dtype=cfg.dtype)
        for method in (self._complete_batch, self._stream_batch):
            method.set_max_batch_size(cfg.max_batch_size)
            method.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        log.info("model %s loaded from %s (context %d)", cfg.model_name, cfg.model, self.engine.max_context)

    def info(self) -> dict[str, Any]:
        return {"model": self.cfg.model_name, "path": self.engine.model_path, "context": self.engine.max_context,
                "device": self.engine.device, "batches": self.batches, "rows": self.rows}

    def chat_prompt(self, messages: list[dict[str, Any]]) -> tuple[str, list[str]]:
        return render_chat([ChatMessage(**m) for m in messages], self.engine.tokenizer)

    def _job(self, prompts: list[str], params: dict[str, Any]) -> _Job:
        from phiray.model.generate import PromptTooLong, SamplingParams

        sampling = SamplingParams(**params)
        for prompt in prompts:
            try:
                self.engine.encode(prompt, sampling.max_tokens)
            except PromptTooLong as err:
                raise OpenAIError(400, str(err), param="prompt",
                                  code="context_length_exceeded") from None
        return _Job(prompts, sampling)

    async def complete(self, prompts: list[str], params: dict[str, Any]) -> dict[str, Any]:
        """Completions for every prompt: {"choices": [[{text, finish_reason, ...} x n] per prompt]}."""
        try:
            job = self._job(prompts, params)
        except OpenAIError as err:
            return _error(err)
        if job.rows > self.cfg.max_batch_size:  # bigger than a batch: it runs as a batch of its own
            results = await asyncio.to_thread(self.engine.generate, job.prompts, job.params)
        else:
            results = await self._complete_batch(job)
        return {"choices": [[vars(c) for c in choices] for choices in results]}

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02, batch_size_fn=_job_rows)
    async def _complete_batch(self, jobs: list[_Job]) -> list[list[Any]]:
        prompts = [p for job in jobs for p in job.prompts]
        params = [job.params for job in jobs for _ in job.prompts]
        self.batches, self.rows = self.batches + 1, self.rows + _job_rows(jobs)
        # A worker thread keeps the replica's event loop free to queue the next batch meanwhile.
        results = await asyncio.to_thread(self.engine.generate, prompts, params)
        out, start = [], 0
        for job in jobs:
            out.append(results[start:start + len(job.prompts)])
            start += len(job.prompts)
        return out

    async def stream(self, prompts: list[str], params: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        """Yields lists of deltas {prompt_index, choice_index, text, finish_reason, prompt/completion_tokens}."""
        try:
            job = self._job(prompts, params)
        except OpenAIError as err:
            yield [_error(err)]
            return
        if job.rows > self.cfg.max_batch_size:
            async for deltas in _iterate_in_thread(self.engine.stream(job.prompts, job.params)):
                yield [vars(d) for d in deltas]
            return
        async for deltas in self._stream_batch(job):
            yield deltas

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.02, batch_size_fn=_job_rows)
    async def _stream_batch(self, jobs: list[_Job]) -> AsyncIterator[list[Any]]:
        prompts = [p for job in jobs for p in job.prompts]
        params = [job.params for job in jobs for _ in job.prompts]
        self.batches, self.rows = self.batches + 1, self.rows + _job_rows(jobs)
        owner = [k for k, job in enumerate(jobs) for _ in job.prompts]
        first = [sum(len(j.prompts) for j in jobs[:k]) for k in range(len(jobs))]
        open_choices = [job.rows for job in jobs]
        async for deltas in _iterate_in_thread(self.engine.stream(prompts, params)):
            per_job: list[Any] = [[] for _ in jobs]
            for d in deltas:
                k = owner[d.prompt_index]
                d.prompt_index -= first[k]
                per_job[k].append(vars(d))
                open_choices[k] -= 1 if d.finish_reason else 0
            # A job whose choices all ended before this step is told so (StopIteration ends its stream).
            yield [StopIteration if not items and open_choices[k] == 0 else items
                   for k, items in enumerate(per_job)]


async def _iterate_in_thread(iterator) -> AsyncIterator[Any]:
    """Drive a blocking iterator (one decoding step per next()) from a worker thread."""
    done = object()
    while True:
        item = await asyncio.to_thread(next, iterator, done)
        if item is done:
            return
        yield item


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
        return {"object": "evaluation", "task_id": request.get("task_id"), "passed": bool(verdict.passed),
                "status": verdict.status, "detail": verdict.detail, "duration_s": verdict.duration_s}


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
    raise OpenAIError(404, f"unknown benchmark task {task_id!r} (HumanEval/<n>, mbpp/<id>, mbpp-sanitized/<id>)",
                      param="task_id", code="task_not_found")


@lru_cache(maxsize=4)
def _tasks(name: str) -> dict[str, Any]:
    from phiray.evals.benchmarks import load_benchmark

    return {t.task_id.lower(): t for t in load_benchmark(name, mbpp_split="all")}
