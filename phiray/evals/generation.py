"""Completions for benchmark prompts from a checkpoint (`generate`, which picks the engine) or from an
OpenAI-compatible endpoint (`generate_endpoint`: `phiray serve`, vLLM, any API).

Engines for a checkpoint: vLLM on Ray Data LLM (`generate_vllm`: continuous batching, paged KV cache, one
engine per actor, CPU or GPU bundles) and transformers in process (`generate_local`, phiray.model.generate).
Every engine gives a prompt that does not fit the context n empty (failing) samples, so pass@k counts it
the same way whichever engine ran.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal

from phiray.evals.benchmarks import STOP_SEQUENCES, Task
from phiray.evals.scoring import truncate
from phiray.model.generate import Completion, Generator, PromptTooLong, SamplingParams
from phiray.rundir import RunDir
from phiray.teacher.vllm_teacher import CPU_ENGINE_KWARGS

log = logging.getLogger("phiray.evals")
Engine = Literal["auto", "vllm", "transformers"]
# `auto` keeps the in-process generator below this many samples (tasks x n): there a vLLM engine start
# (~40-60 s on CPU, RAY_ON_CPU.md; Ray Data LLM ran 256 prompts in ~43 s including it) costs more than the
# whole generation, e.g. the tiny run's 40 greedy tasks per model. benchmarks/eval_generation.py measures
# the crossover; its first run here did not finish (Ray failed to start under load, RESULTS.md), so the
# value is an estimate until it is measured on a quiet machine.
AUTO_VLLM_MIN_SAMPLES = 256

if TYPE_CHECKING:
    from phiray.rundir import FsPath


@dataclass
class GenerationSettings:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    max_new_tokens: int = 256
    batch_size: int = 8
    seed: int = 1234
    vllm_gpus: int = 0  # GPUs per vLLM engine (0: a CPU engine in a {CPU: 1} bundle)


def choose_engine(engine: Engine, samples: int) -> str:
    """The engine `generate` runs: `auto` is vLLM for many samples when vLLM is installed, else transformers."""
    if engine != "auto":
        return engine
    if samples < AUTO_VLLM_MIN_SAMPLES:
        return "transformers"
    try:
        import vllm  # noqa: F401
    except ImportError:
        log.info("evaluate: vLLM is not installed; generating with transformers")
        return "transformers"
    return "vllm"


def generate(model_path: str, tasks: list[Task], gen: GenerationSettings, engine: Engine = "auto") -> list[dict]:
    """Samples {"task_id", "completion"} (n per task, in task order) from a checkpoint, on the chosen engine."""
    chosen = choose_engine(engine, len(tasks) * gen.n)
    log.info("evaluate: %d tasks x %d samples on %s", len(tasks), gen.n, chosen)
    if chosen == "vllm":
        return generate_vllm(model_path, tasks, gen)
    return generate_local(model_path, tasks, gen)


def generate_local(model_path: str, tasks: list[Task], gen: GenerationSettings) -> list[dict]:
    """Samples {"task_id", "completion"} from a HF checkpoint, batched."""
    engine = Generator.load(model_path)
    params = SamplingParams(
        max_tokens=gen.max_new_tokens,
        temperature=gen.temperature,
        top_p=gen.top_p,
        stop=STOP_SEQUENCES,
        seed=gen.seed,
        n=gen.n,
    )
    samples = []
    for start in range(0, len(tasks), gen.batch_size):
        batch = tasks[start : start + gen.batch_size]
        try:
            outputs = engine.generate([t.prompt for t in batch], params)
        except PromptTooLong:
            outputs = [_one(engine, t.prompt, params) for t in batch]
        for task, completions in zip(batch, outputs):
            samples += [{"task_id": task.task_id, "completion": truncate(c.text)} for c in completions]
    return samples


def generate_in_task(
    run_dir: "FsPath",
    model_relpath: str,
    tasks: list[Task],
    gen: GenerationSettings,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    generate: Callable | None = None,
) -> list[dict]:
    """Samples generated in a Ray task holding ``num_cpus``/``num_gpus`` (so a 1.3B model loads on the
    node that offers the GPU, never in the job driver). The task reads the model from the run dir
    (``run_dir``/``model_relpath``) and calls ``generate(local_model_dir, tasks, gen)``
    (default :func:`generate_local`; the engine is the one thing that varies)."""
    import ray

    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_generate_from_run_dir)
    return ray.get(task.remote(run_dir, model_relpath, tasks, gen, generate or generate_local))


def _generate_from_run_dir(
    run_dir: "FsPath", model_relpath: str, tasks: list[Task], gen: GenerationSettings, generate: Callable
) -> list[dict]:
    rd = RunDir(run_dir.path, filesystem=run_dir.fs)
    with rd.local_dir(model_relpath, upload=False) as path:
        return generate(path, tasks, gen)


def _one(engine, prompt: str, params) -> list:
    """A prompt longer than the model's context still gets n (empty, failing) samples: pass@k counts it."""
    try:
        return engine.generate([prompt], params)[0]
    except PromptTooLong:
        return [Completion(text="", prompt_tokens=0, completion_tokens=0, finish_reason="length")] * params.n


def generate_endpoint(
    url: str, model: str, tasks: list[Task], gen: GenerationSettings, api_key: str = "EMPTY"
) -> list[dict]:
    """Samples from an OpenAI-compatible /v1/completions endpoint."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key=api_key, max_retries=3)
    samples = []
    for task in tasks:
        reply = client.completions.create(
            model=model,
            prompt=task.prompt,
            n=gen.n,
            temperature=gen.temperature,
            top_p=gen.top_p,
            max_tokens=gen.max_new_tokens,
            stop=STOP_SEQUENCES[:4],
            seed=gen.seed,
        )
        samples += [
            {"task_id": task.task_id, "completion": truncate(choice.text)}
            for choice in sorted(reply.choices, key=lambda c: c.index)
        ]
    return samples


def _fits(tokenizer, prompt: str, max_tokens: int, context: int) -> bool:
    return len(tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]) + max_tokens <= context


def generate_vllm(
    model_path: str, tasks: list[Task], gen: GenerationSettings, model_source: str | None = None
) -> list[dict]:
    """Samples on Ray Data LLM: one row per (task, sample), each with its own seed (gen.seed + sample index),
    so a rerun reproduces every sample; greedy decoding generates each task once and repeats it n times.

    ``model_path`` is a local copy the driver reads the config and tokenizer from; the engine actors load
    ``model_source`` (default: the same path). On a multi-node cluster with an object-store run dir that is
    the model's ``s3://``/``gs://`` URI: Ray Data LLM downloads it on whichever node runs each engine, where a
    driver-local path would not exist."""
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    from transformers import AutoConfig, AutoTokenizer

    context = int(getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", 2048))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    per_task = 1 if gen.temperature == 0 else gen.n
    rows = [
        {"row": i * per_task + j, "prompt": t.prompt, "seed": gen.seed + j}
        for i, t in enumerate(tasks)
        if _fits(tokenizer, t.prompt, gen.max_new_tokens, context)
        for j in range(per_task)
    ]
    texts: dict[int, str] = {}
    if rows:
        gpus = gen.vllm_gpus
        bundles = [{"GPU": 1, "CPU": 1}] * gpus if gpus else [{"CPU": 1}]
        config = vLLMEngineProcessorConfig(
            model_source=model_source or model_path,
            concurrency=1,
            batch_size=max(gen.batch_size, 16),
            engine_kwargs={"max_model_len": context, "tensor_parallel_size": max(gpus, 1)}
            | ({"dtype": "auto"} if gpus else CPU_ENGINE_KWARGS),
            # Without explicit bundles Ray Data LLM asks for a GPU and waits forever on a CPU cluster.
            placement_group_config={"bundles": bundles},
            runtime_env=None if gpus else {"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}},
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,
        )
        sampling = {
            "max_tokens": gen.max_new_tokens,
            "temperature": gen.temperature,
            "top_p": gen.top_p,
            "stop": list(STOP_SEQUENCES),
        }
        processor = build_processor(
            config,
            preprocess=lambda r: {
                "row": r["row"],
                "prompt": r["prompt"],
                "sampling_params": {**sampling, "seed": int(r["seed"])},
            },
            postprocess=lambda r: {"row": r["row"], "text": r["generated_text"]},
        )
        for out in processor(ray.data.from_items(rows)).iter_rows():
            texts[int(out["row"])] = out["text"]
    samples = []
    for i, task in enumerate(tasks):
        for j in range(gen.n):
            samples.append(
                {"task_id": task.task_id, "completion": truncate(texts.get(i * per_task + j % per_task, ""))}
            )
    return samples
