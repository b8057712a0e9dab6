"""One module per stage, each ``run(cfg: RunConfig, run_dir: RunDir) -> Manifest``.

Stages are thin: they wire Ray (Dataset pipelines, TorchTrainer, Tuner) around the plain code in
``phiray.data``, ``phiray.teacher``, ``phiray.model``, ``phiray.train``, ``phiray.sandbox`` and
``phiray.evals``. The table of stages, their config sections and their upstream stages is ``STAGES``
below (the CLI builds one sub-command per entry); the planner that decides what to skip lives in
``phiray.pipeline``.

Contract for a stage module:
- read inputs only from ``run_dir`` (upstream stages' outputs), write only under ``run_dir/<stage>/``;
- be re-runnable: clear stale outputs it will rewrite (``run_dir.remove(stage, "part")``) but may keep
  its own resumable state (request caches, training checkpoints) when it can tell it is still valid;
- return a ``Manifest`` with rows/metrics/headline/outputs; the runner stamps the config hash,
  upstream run ids, times and versions and writes it last.
"""

from __future__ import annotations

import hashlib

from phiray.config import RunConfig
from phiray.data import annotators
from phiray.pipeline import Stage


def _llm_annotator(cfg: RunConfig) -> bool:
    """The teacher shapes annotate's labels only when an LLM writes them."""
    return cfg.annotate.annotator == "llm"


def _annotator_version(cfg: RunConfig) -> str:
    """The labels' rules beyond the config: the heuristic's version, or a hash of the judge's prompt."""
    if _llm_annotator(cfg):
        return "llm-prompt-" + hashlib.sha256(annotators.LLM_PROMPT.encode()).hexdigest()[:12]
    return annotators.HEURISTIC_VERSION


def _verifies(cfg: RunConfig) -> bool:
    """The sandbox shapes synthesize's output only when it verifies exercises."""
    return cfg.synthesize.verify


STAGES: list[Stage] = [
    Stage("ingest", "Read the raw corpus (files, JSONL, Parquet, HF); skip bad files by reason.", ("ingest",)),
    Stage("dedup", "Remove exact and MinHash-LSH near duplicates.", ("dedup",), ("ingest",)),
    Stage("decontaminate", "Drop documents sharing long n-grams with HumanEval/MBPP.", ("decontaminate",), ("dedup",)),
    Stage(
        "annotate",
        "Label a seeded sample for educational value (LLM or heuristic).",
        ("annotate", "teacher", "embed", "classify", "run.seed"),
        ("decontaminate",),  # active: pool + forest
        hashed_if=(("teacher", _llm_annotator),),
        version=_annotator_version,
    ),
    Stage(
        "classify",
        "Embed the labelled sample and fit a random forest; held-out metrics.",
        ("classify", "embed", "run.seed"),
        ("annotate",),
    ),
    Stage(
        "filter",
        "Score every document on a Ray Data actor pool and keep the best.",
        ("filter", "embed"),
        ("classify", "decontaminate"),
    ),
    Stage(
        "synthesize",
        "Generate textbooks and verified exercises through a teacher.",
        ("synthesize", "teacher", "sandbox", "run.seed"),
        ("filter",),
        hashed_if=(("sandbox", _verifies),),
    ),
    Stage(
        "similarity",
        "phi-1 §5: each HumanEval problem's nearest training exercise (embedding, AST match rate).",
        ("similarity", "embed"),
        ("synthesize",),
        needs_ray=False,
    ),
    Stage(
        "tokenize",
        "Build the tokenizer; pack each source into fixed-length sequences.",
        ("tokenizer", "tokenize", "run.seed", "similarity.prune_tau"),
        ("decontaminate", "filter", "synthesize"),
    ),
    Stage(
        "pretrain",
        "Pretrain the phi model with DeepSpeed on Ray Train.",
        ("model", "train", "pretrain", "run.seed"),
        ("tokenize",),
    ),
    Stage(
        "grow",
        "Grow the pretrained model into the larger shape by weight reuse; continue pretraining.",
        ("model", "train", "grow", "run.seed"),
        ("pretrain",),
    ),
    Stage(
        "finetune",
        "Finetune on exercises (loss on the completion only).",
        ("train", "finetune", "run.seed"),
        ("pretrain", "grow", "tokenize"),
    ),
    Stage(
        "control",
        "Control model: same size and budget, unfiltered corpus only.",
        ("model", "train", "control", "run.seed"),
        ("tokenize",),
    ),
    Stage(
        "evaluate",
        "pass@k on held-out exercises, HumanEval and MBPP in the sandbox.",
        ("evaluate", "sandbox"),
        ("finetune", "control"),
    ),
    Stage(
        "thesis",
        "phiray's data vs the unfiltered control over seeds: pass@1 on validation and test exercises.",
        ("thesis", "model", "train", "pretrain", "grow", "finetune", "control", "evaluate", "sandbox", "run.seed"),
        ("tokenize", "pretrain", "grow", "finetune", "control", "evaluate"),
    ),
    Stage(
        "sweep",
        "Ray Tune sweep of data-mixture weights on proxy models.",
        ("sweep", "model", "train", "pretrain", "run.seed"),
        ("tokenize",),
    ),
]
STAGE_BY_NAME = {s.name: s for s in STAGES}
