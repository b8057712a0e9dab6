"""Open-weights teacher: a vLLM engine on Ray Data LLM (``ray.data.llm``), CPU or GPU by config.

The unit of work is a Ray Data dataset of prompt rows, so generation streams through actor pools and
never gathers on the driver:

    rows -> map_batches(LookupBatch)    hash every request (the OpenAI teacher's key), answer cache hits,
                                        mark repeats of a request already on its way to the engine
         -> misses -> build_processor(vLLMEngineProcessorConfig)   the engine sees each uncached request once
         -> map(_answer_row)            one schema for answers and failed rows (a prompt longer than
                                        ``vllm_max_model_len``, ...): a failure is a counted rejection
         -> map_batches(StoreBatch)     append each answer to the request cache the moment it arrives
         -> repeats -> LookupBatch      answered from the cache once their first copy's answer is stored
         -> union                       rows + text, finish_reason, tokens_in/out, cached, error

Resumability: answers are cached batch by batch as they leave the engine, so a run killed mid-way and run
again re-sends only what was never answered. Seeded sampling: each request's vLLM ``seed`` is derived from
its cache key, so a rerun with the cache cleared reproduces its answers. Token counts are vLLM's own
(prompt tokens and generated tokens per request).

:class:`VLLMTeacher` wraps the same pipeline in the ``complete(requests) -> responses`` protocol for
stages that hold their (small) request list on the driver, such as annotate's labelled sample.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable

from phiray.config import TeacherConfig
from phiray.teacher.base import Request, Response, new_stats, request_hash
from phiray.teacher.cache import RequestCache
from phiray.teacher.columns import ANSWER_COLUMNS, columns_of, rows_of

if TYPE_CHECKING:
    import ray.data

    from phiray.rundir import FsPath

INFERENCE_ERROR = "__inference_error__"  # Ray Data LLM's column on a failed row (should_continue_on_error)
# Every phiray CPU engine: fp32, eager (no CUDA graphs to capture), and no chunked prefill: on CPU, vLLM 0.32
# kills the engine ("CPU Generator does not use offset") when it discards the sampled token of a *seeded*
# request whose prompt was prefilled in chunks, and phiray seeds every teacher and evaluation request.
CPU_ENGINE_KWARGS: dict[str, Any] = {"dtype": "float32", "enforce_eager": True, "enable_chunked_prefill": False}


def sampling_defaults(cfg: "TeacherConfig") -> dict[str, Any]:
    """The sampling parameters hashed into every key (the same defaults the OpenAI teacher hashes)."""
    return {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}


def seed_of(key: str) -> int:
    """vLLM's per-request seed, derived from the cache key: the same request samples the same answer."""
    return int(key[:8], 16)


def engine_config(cfg: "TeacherConfig"):
    """``vLLMEngineProcessorConfig`` for ``cfg``: CPU engines get a one-CPU placement bundle (without it Ray
    Data LLM asks for a GPU and waits forever), fp32 and eager mode; GPU engines one bundle per GPU."""
    from ray.data.llm import vLLMEngineProcessorConfig

    on_gpu = cfg.vllm_gpus_per_engine > 0
    kwargs: dict[str, Any] = {"max_model_len": cfg.vllm_max_model_len}
    if on_gpu:
        kwargs["tensor_parallel_size"] = cfg.vllm_gpus_per_engine
    else:
        kwargs |= CPU_ENGINE_KWARGS
    bundles = [{"GPU": 1, "CPU": 1}] * cfg.vllm_gpus_per_engine if on_gpu else [{"CPU": 1}]
    env = {} if on_gpu else {"VLLM_CPU_KVCACHE_SPACE": str(cfg.vllm_cpu_kvcache_gib)}
    return vLLMEngineProcessorConfig(
        model_source=cfg.model,
        engine_kwargs=kwargs | cfg.vllm_engine_kwargs,
        concurrency=cfg.vllm_engines,
        batch_size=cfg.vllm_batch_size,
        chat_template_stage={"enabled": cfg.api == "chat", "num_cpus": 0.25, "concurrency": 1},
        # vLLM tokenizes text prompts and detokenizes answers itself; separate stages would only hold
        # more CPU actors (on 2 CPUs they starve the engine of a core).
        tokenize_stage=False,
        detokenize_stage=False,
        placement_group_config={"bundles": bundles},
        runtime_env={"env_vars": env},
        # One bad request (a prompt longer than the context, ...) must not fail the stage: its row comes back
        # with the error, becomes a counted rejection and is not cached (a rerun tries it again).
        should_continue_on_error=True,
    )


def _engine_input(row: dict[str, Any], req: Request, api: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """Ray Data LLM preprocess: the request as ``messages`` (chat) or ``prompt``, and sampling params
    (the row's own columns travel through the engine stages to the postprocess)."""
    out: dict[str, Any] = {"sampling_params": {**defaults, **req.params, "seed": seed_of(row["hash"])}}
    if api == "chat":
        out["messages"] = req.messages or [{"role": "user", "content": req.prompt or ""}]
    else:
        out["prompt"] = req.prompt if req.prompt is not None else req.text()
    return out


def _engine_output(row: dict[str, Any], columns: list[str], max_tokens: int) -> dict[str, Any]:
    """Ray Data LLM postprocess: the row's columns + the answer and vLLM's token counts (truncation read off
    the length: Ray Data LLM does not carry vLLM's finish reason)."""
    n_out = int(row.get("num_generated_tokens") or 0)
    return {
        **{c: row[c] for c in columns},
        "text": row.get("generated_text") or "",
        "tokens_in": int(row["num_input_tokens"]),
        "tokens_out": n_out,
        "finish_reason": "length" if n_out >= max_tokens else "stop",
        "cached": False,
        "error": "",
    }


def engine_error_reason(message: str) -> str:
    """A short, countable reason for a request the engine refused (Ray Data LLM logs the full message)."""
    lowered = message.lower()
    if "maximum context length" in lowered or "maximum model length" in lowered:
        return "prompt_too_long"
    return "engine_error"


def _answer_row(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    """After the engine: answered rows as they are, failed rows (which bypass the postprocess and carry the
    engine's whole input) as the row's columns + an empty answer + the reason."""
    message = row.get(INFERENCE_ERROR) or ""
    if not message:
        return {c: row[c] for c in (*columns, *ANSWER_COLUMNS)}
    return {
        **{c: row[c] for c in columns},
        "text": "",
        "finish_reason": "",
        "tokens_in": 0,
        "tokens_out": 0,
        "cached": False,
        "error": engine_error_reason(str(message)),
    }


class LookupBatch:
    """Ray Data callable: hash each row's request (the OpenAI teacher's key) and answer cache hits.

    With a cache, a request whose key this actor already passed on as a miss is marked ``repeat``: it is
    answered from the cache after its first copy's answer is stored, so the engine sees each request once
    (the pool has one actor, so it sees every row)."""

    def __init__(
        self,
        teacher_cfg: TeacherConfig,
        cache_dir: str | None,
        request_of: Callable[[dict], Request],
        failed_repeats: bool = False,
    ):
        self.cfg = teacher_cfg
        self.defaults, self.request_of = sampling_defaults(self.cfg), request_of
        self.cache = RequestCache(cache_dir) if cache_dir else None
        self.failed_repeats = failed_repeats  # the second lookup: a miss now means the first copy failed
        self.sent: set[str] = set()

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        if self.cache is not None:
            self.cache.reload()
        out = []
        for row in rows_of(batch):
            row.pop("repeat", None)
            key = (
                row["hash"]
                if self.failed_repeats
                else request_hash(self.cfg.model, self.cfg.api, self.request_of(row), self.defaults)
            )
            hit = self.cache.get(key) if self.cache is not None else None
            answer = (
                {
                    "text": hit["text"],
                    "finish_reason": hit.get("finish_reason") or "",
                    "tokens_in": hit.get("tokens_in", 0),
                    "tokens_out": hit.get("tokens_out", 0),
                    "cached": True,
                }
                if hit
                else {"text": "", "finish_reason": "", "tokens_in": 0, "tokens_out": 0, "cached": False}
            )
            error = "" if hit or not self.failed_repeats else "identical_request_failed"
            repeat = hit is None and self.cache is not None and key in self.sent
            if hit is None and self.cache is not None:
                self.sent.add(key)
            out.append({**row, "hash": key, **answer, "error": error, "repeat": repeat})
        return columns_of(out)


class StoreBatch:
    """Ray Data callable (one actor, one cache shard): append each engine answer to the cache (on a local
    disk per answer; on an object store the batch is committed before the rows move on), rows unchanged."""

    def __init__(self, cache_dir: "str | FsPath | None"):
        self.cache = RequestCache(cache_dir) if cache_dir else None

    def __call__(self, batch: Any) -> Any:
        if self.cache is not None:
            for row in rows_of(batch):
                if not row["error"]:  # failures are not answers: a rerun sends them again
                    self.cache.put(
                        row["hash"], {k: row[k] for k in ("text", "finish_reason", "tokens_in", "tokens_out")}
                    )
            self.cache.flush()
        return batch


def generate(
    cfg: "TeacherConfig", rows: "ray.data.Dataset", cache_dir: str | None, request_of: Callable[[dict], Request]
) -> "ray.data.Dataset":
    """``rows`` + ``hash`` + :data:`ANSWER_COLUMNS`: the teacher's answer to ``request_of(row)``.

    Only cache misses reach the engine, each request once; the engine is not started when every request is
    cached. A request the engine refuses comes back with ``error`` set (never raised, never cached)."""
    import ray
    from ray.data.llm import build_processor

    def lookup(ds: "ray.data.Dataset", failed_repeats: bool = False) -> "ray.data.Dataset":
        return ds.map_batches(
            LookupBatch,
            batch_size=256,
            batch_format="pandas",
            num_cpus=0.25,
            fn_constructor_kwargs={
                "teacher_cfg": cfg,
                "cache_dir": cache_dir,
                "request_of": request_of,
                "failed_repeats": failed_repeats,
            },
            compute=ray.data.ActorPoolStrategy(size=1),
        ).materialize()

    looked_up = lookup(rows)
    # Every side materialized (prompt rows are small) before the engine starts: a pending 1-CPU filter task
    # beside a 1-CPU engine would stall the pipeline on 2 CPUs.
    hits = looked_up.filter(lambda row: bool(row["cached"])).drop_columns(["repeat"]).materialize()
    misses = (
        looked_up.filter(lambda row: not row["cached"] and not row["repeat"]).drop_columns(["repeat"]).materialize()
    )
    repeats = looked_up.filter(lambda row: bool(row["repeat"])).drop_columns(["repeat"]).materialize()
    n_misses = misses.count()
    if n_misses == 0:
        return hits
    # One block per engine batch: a Ray Data task hands its output on when it ends, so a single block of
    # every miss would reach StoreBatch only after the engine answered them all (a kill before that loses
    # every answer), and the engine would hold one batch in flight instead of max_concurrent_batches.
    misses = misses.repartition(max(1, math.ceil(n_misses / max(1, cfg.vllm_batch_size)))).materialize()
    api, defaults, max_tokens = cfg.api, sampling_defaults(cfg), cfg.max_tokens
    columns = [c for c in looked_up.columns() if c not in (*ANSWER_COLUMNS, "repeat")]  # the rows' own + hash
    processor = build_processor(
        engine_config(cfg),
        preprocess=lambda row: _engine_input(row, request_of(row), api, defaults),
        postprocess=lambda row: _engine_output(row, columns, max_tokens),
        # Row maps are light: fractional CPUs leave the engine its core on 2 CPUs (a
        # default 1-CPU task beside a 1-CPU engine stalls the pipeline there).
        preprocess_map_kwargs={"num_cpus": 0.25},
        postprocess_map_kwargs={"num_cpus": 0.25},
    )
    answered = processor(misses).map(_answer_row, fn_kwargs={"columns": columns}, num_cpus=0.25)
    answered = answered.map_batches(
        StoreBatch,
        batch_size=8,
        batch_format="pandas",
        num_cpus=0.25,
        fn_constructor_kwargs={"cache_dir": cache_dir},
        compute=ray.data.ActorPoolStrategy(size=1),
    )
    if repeats.count() == 0:
        return hits.union(answered)
    # Repeats wait for their first copies' answers to be stored (only then is ``answered`` held whole).
    answered = answered.materialize()
    return hits.union(answered, lookup(repeats, failed_repeats=True).drop_columns(["repeat"]))


class VLLMTeacher:
    """The ``complete(requests)`` protocol on top of :func:`generate` (requests held on the driver)."""

    def __init__(self, cfg: "TeacherConfig", cache_dir: str | None = None):
        self.cfg, self.cache_dir = cfg, cache_dir
        self.stats: dict[str, Any] = new_stats()

    def complete(self, requests: list[Request]) -> list[Response]:
        import ray

        items = [
            {
                "i": i,
                "request": json.dumps({"messages": r.messages, "prompt": r.prompt, "params": r.params, "seed": r.seed}),
            }
            for i, r in enumerate(requests)
        ]
        ds = generate(self.cfg, ray.data.from_items(items), self.cache_dir, request_of=_request_of_item)
        by_index = {int(row["i"]): row for row in ds.take_all()}
        out = []
        for i, req in enumerate(requests):
            row = by_index[i]
            out.append(
                Response(
                    key=req.key,
                    text=row["text"] if not row["error"] else None,
                    tokens_in=int(row["tokens_in"]),
                    tokens_out=int(row["tokens_out"]),
                    cached=bool(row["cached"]),
                    error=row["error"] or None,
                    finish_reason=row["finish_reason"] or None,
                    attempts=0 if row["cached"] else 1,
                )
            )
        sent = [r for r in out if not r.cached and r.error != "identical_request_failed"]
        self.stats["requests"] += len(out)
        self.stats["cache_hits"] += len(out) - len(sent)
        self.stats["sent"] += len(sent)
        self.stats["tokens_in"] += sum(r.tokens_in for r in sent)
        self.stats["tokens_out"] += sum(r.tokens_out for r in sent)
        for r in out:
            if r.error:
                self.stats["failures_by_reason"][r.error] = self.stats["failures_by_reason"].get(r.error, 0) + 1
        return out


def _request_of_item(item: dict[str, Any]) -> Request:
    """The :class:`Request` a :class:`VLLMTeacher` item row carries (as JSON)."""
    return Request(**json.loads(item["request"]))
