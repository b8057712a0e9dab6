"""evaluate: pass@k of the run's final models on the synthetic splits, HumanEval and MBPP, in the sandbox.

Reads ``<stage>/model/`` for each stage named in ``evaluate.models``, ``synthesize/heldout/`` for the
exercises benchmark (the test split: held-out concept families; this stage is the only one that reads it,
once, at the end) and ``synthesize/validation/`` for the validation benchmark (what sweeps select on); writes ``evaluate/results.json`` and per model/benchmark ``evaluate/<model>/<bench>
.tasks.jsonl`` (per task) and ``.samples.jsonl`` (per sample, with the sandbox's verdict).
"""

from __future__ import annotations

import logging
from typing import Any

from phiray.config import RunConfig
from phiray.evals.benchmarks import SPLITS
from phiray.evals.models import load_benchmarks, score_model
from phiray.rundir import Manifest, RunDir
from phiray.sandbox.placement import sandbox_for

log = logging.getLogger("phiray")


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """pass@k of each model of ``evaluate.models`` on each benchmark, in the sandbox (per-task files too)."""
    ev = cfg.evaluate
    rd.remove("evaluate", "models")
    benchmarks = load_benchmarks(cfg, rd, list(ev.benchmarks))
    sandbox = sandbox_for(cfg.sandbox)  # on the evaluator nodes when sandbox.ray_resources names them
    all_results: dict[str, Any] = {}
    outputs, headline, metrics = ["evaluate/results.json"], {}, {}
    skipped = 0
    for model in ev.models:
        if not rd.exists(model, "model"):
            log.warning("evaluate: %s/model not found in the run dir; skipped", model)
            skipped += 1
            continue
        results, written = score_model(cfg, rd, model, benchmarks, sandbox, "evaluate")
        outputs += written
        all_results[model] = results
        for bench, summary in results.items():
            for key, value in summary.items():
                if key.startswith("pass@"):
                    metrics[f"{model}/{bench}/{key}"] = value
                    if key == f"pass@{ev.k[0]}":
                        headline[f"{model}/{bench}"] = round(value, 4)
    rd.write_json(
        "evaluate/results.json",
        {
            "n_samples": ev.n_samples,
            "k": ev.k,
            "temperature": ev.temperature,
            "isolation": sandbox.isolation,
            "sandbox_resources": dict(cfg.sandbox.ray_resources),
            "splits": {b: SPLITS[b] for b in ev.benchmarks if b in SPLITS},
            "results": all_results,
        },
    )
    if not all_results:
        raise FileNotFoundError(f"evaluate: none of the models {ev.models} exists in the run dir")
    rows = {bench: len(tasks) for bench, tasks in benchmarks.items()} | {
        "models": len(all_results),
        "models_skipped": skipped,
    }
    return Manifest(stage="evaluate", rows=rows, metrics=metrics, headline=headline, outputs=outputs)
