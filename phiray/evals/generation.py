"""Completions for benchmark prompts: a local checkpoint (phiray.model.generate) or an OpenAI-compatible
endpoint (the ``openai`` client's completions API, e.g. `phiray serve`, vLLM)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from phiray.evals.benchmarks import STOP_SEQUENCES, Task
from phiray.evals.scoring import truncate

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


def generate_local(model_path: str, tasks: list[Task], gen: GenerationSettings) -> list[dict]:
    """Samples {"task_id", "completion"} from a HF checkpoint, batched."""
    from phiray.model.generate import Generator, PromptTooLong, SamplingParams

    engine = Generator.load(model_path)
    params = SamplingParams(max_tokens=gen.max_new_tokens, temperature=gen.temperature, top_p=gen.top_p,
                            stop=STOP_SEQUENCES, seed=gen.seed, n=gen.n)
    samples = []
    for start in range(0, len(tasks), gen.batch_size):
        batch = tasks[start:start + gen.batch_size]
        try:
            outputs = engine.generate([t.prompt for t in batch], params)
        except PromptTooLong:
            outputs = [_one(engine, t.prompt, params) for t in batch]
        for task, completions in zip(batch, outputs):
            samples += [{"task_id": task.task_id, "completion": truncate(c.text)} for c in completions]
    return samples


def generate_in_task(run_dir: "FsPath", model_relpath: str, tasks: list[Task], gen: GenerationSettings,
                     num_cpus: float = 1.0, num_gpus: float = 0.0, generate: Callable | None = None) -> list[dict]:
    """Samples generated in a Ray task holding ``num_cpus``/``num_gpus`` (so a 1.3B model loads on the
    node that offers the GPU, never in the job driver). The task reads the model from the run dir
    (``run_dir``/``model_relpath``) and calls ``generate(local_model_dir, tasks, gen)``
    (default :func:`generate_local`; the engine is the one thing that varies)."""
    import ray

    task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(_generate_from_run_dir)
    return ray.get(task.remote(run_dir, model_relpath, tasks, gen, generate or generate_local))


def _generate_from_run_dir(run_dir: "FsPath", model_relpath: str, tasks: list[Task], gen: GenerationSettings,
                           generate: Callable) -> list[dict]:
    from phiray.rundir import RunDir

    rd = RunDir(run_dir.path, filesystem=run_dir.fs)
    with rd.local_dir(model_relpath, upload=False) as path:
        return generate(path, tasks, gen)


def _one(engine, prompt: str, params) -> list:
    """A prompt longer than the model's context still gets n (empty, failing) samples: pass@k counts it."""
    from phiray.model.generate import Completion, PromptTooLong

    try:
        return engine.generate([prompt], params)[0]
    except PromptTooLong:
        return [Completion(text="", prompt_tokens=0, completion_tokens=0, finish_reason="length")] * params.n


def generate_endpoint(url: str, model: str, tasks: list[Task], gen: GenerationSettings,
                      api_key: str = "EMPTY") -> list[dict]:
    """Samples from an OpenAI-compatible /v1/completions endpoint."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key=api_key, max_retries=3)
    samples = []
    for task in tasks:
        reply = client.completions.create(model=model, prompt=task.prompt, n=gen.n, temperature=gen.temperature,
                                          top_p=gen.top_p, max_tokens=gen.max_new_tokens, stop=STOP_SEQUENCES[:4],
                                          seed=gen.seed)
        samples += [{"task_id": task.task_id, "completion": truncate(choice.text)}
                    for choice in sorted(reply.choices, key=lambda c: c.index)]
    return samples
