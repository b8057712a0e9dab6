"""Scoring a run's models: pass@k of ``<model>/model`` in a run directory on the run's benchmarks, with the
settings of the ``evaluate`` config section. Shared by the ``evaluate`` stage (the pipeline's models) and the
``thesis`` stage (each seed's models).

``load_benchmarks`` reads the benchmarks (the run's own splits for ``exercises``/``validation``); ``score_model``
generates (vLLM on Ray Data LLM, or transformers in a Ray task: never in the driver), scores in the sandbox and
writes ``<out_dir>/models/<name>/<bench>.tasks.jsonl`` (per task) and ``.samples.jsonl`` (per sample).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from phiray.config import RunConfig
from phiray.evals.benchmarks import SPLITS, Task, load_benchmark
from phiray.evals.generation import GenerationSettings, choose_engine, generate_in_task, generate_vllm
from phiray.evals.runner import evaluate, per_task_files, table
from phiray.model.card import add_evaluation
from phiray.rundir import RunDir
from phiray.schemas import require

log = logging.getLogger("phiray")


def _split_rows(rd: RunDir, benchmark: str) -> list[dict[str, Any]]:
    split = SPLITS[benchmark]
    if not rd.exists(split):
        raise FileNotFoundError(f"evaluate: the {benchmark} benchmark needs {split}/ (run synthesize)")
    columns = ["id", "prompt", "solution", "tests", "entry_point"]
    require(rd, *split.split("/"), columns=columns)
    return rd.read_table(split, columns=columns).to_pylist()


def load_benchmarks(cfg: RunConfig, rd: RunDir, names: list[str]) -> dict[str, list[Task]]:
    """The tasks of each benchmark in ``names`` (the run's splits for exercises/validation), at evaluate.limit."""
    ev = cfg.evaluate
    return {
        b: load_benchmark(
            b, ev.mbpp_path, ev.limit, _split_rows(rd, b) if b in SPLITS else None, evalplus_path=ev.evalplus_path
        )
        for b in names
    }


def generation_settings(cfg: RunConfig) -> GenerationSettings:
    ev = cfg.evaluate
    return GenerationSettings(
        n=ev.n_samples,
        temperature=ev.temperature,
        top_p=ev.top_p,
        max_new_tokens=ev.max_new_tokens,
        batch_size=ev.batch_size,
        seed=cfg.run.seed,
        vllm_gpus=ev.vllm_gpus,
    )


def score_model(
    cfg: RunConfig,
    rd: RunDir,
    model: str,
    benchmarks: dict[str, list[Task]],
    sandbox,
    out_dir: str,
    name: str | None = None,
    update_card: bool = True,
) -> tuple[dict[str, Any], list[str]]:
    """pass@k of ``<model>/model`` on ``benchmarks``; per-sample and per-task files under
    ``<out_dir>/models/<name>/`` and (``update_card``) the numbers added to the model's card. Returns
    (results, files written)."""
    name = name or model
    gen = generation_settings(cfg)
    results, samples = evaluate(benchmarks, sample_generator(cfg, rd, gen, model), sandbox, cfg.evaluate.k)
    written = []
    for bench, rows in samples.items():
        rd.write_text(f"{out_dir}/models/{name}/{bench}.samples.jsonl", _jsonl(rows))
    for bench, rows in per_task_files(samples, cfg.evaluate.k).items():
        rd.write_text(f"{out_dir}/models/{name}/{bench}.tasks.jsonl", _jsonl(rows))
        written.append(f"{out_dir}/models/{name}/{bench}.tasks.jsonl")
    if update_card:
        add_evaluation(rd, f"{model}/model", results)  # the model card gains its evaluation numbers
    log.info("%s", table(results, title=f"evaluate {model}"))
    return results, written


def sample_generator(cfg: RunConfig, rd: RunDir, gen: GenerationSettings, model: str):
    """tasks -> samples for ``<model>/model``, never generating in the driver: vLLM runs in Ray Data LLM's
    engine actors (their bundles hold the GPU); transformers in a task holding evaluate's resources."""
    ev = cfg.evaluate
    num_gpus = ev.num_gpus if ev.num_gpus is not None else (1.0 if cfg.train.use_gpu else 0.0)

    def generate(tasks):
        if choose_engine(ev.engine, len(tasks) * gen.n) == "vllm":
            # The driver reads the tokenizer from a local copy; the engine actors, on any node, load the
            # model from the run dir itself (its URI on an object store, where a driver path would not exist).
            with rd.local_dir(f"{model}/model", upload=False) as path:
                return generate_vllm(path, tasks, gen, model_source=rd.uri(f"{model}/model") or path)
        return generate_in_task(rd.fs_path(), f"{model}/model", tasks, gen, num_cpus=ev.num_cpus, num_gpus=num_gpus)

    return generate


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)
