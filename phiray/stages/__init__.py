"""One module per stage, each ``run(cfg: RunConfig, run_dir: RunDir) -> Manifest``.

Stages are thin: they wire Ray (Dataset pipelines, TorchTrainer, Tuner) around the plain code in
``phiray.data``, ``phiray.teacher``, ``phiray.model``, ``phiray.train``, ``phiray.sandbox`` and
``phiray.evals``, and never import each other. The table of stages is ``STAGES`` below (the CLI builds one
sub-command per entry): each entry's config sections, upstream stages, what it reads and writes, and its
``run``; the planner that decides what to skip lives in ``phiray.pipeline``.

Each ``run`` is reached through a three-line loader (``_run_<stage>``) that imports it: go-to-definition follows
the import, and ``import phiray.stages`` (every CLI start) stays light. Importing every stage module here would
import torch (grow) and Ray Train/Tune (sweep) and double the CLI's start-up; the declarations (reads, writes,
sections) are eager, only the code is lazy.

Contract for a stage module:
- read inputs only from ``run_dir`` (upstream stages' outputs, declared in ``reads``), write only under
  ``run_dir/<stage>/`` (its ``writes``; the Parquet ones with their schema in ``phiray.schemas``);
- be re-runnable: clear stale outputs it will rewrite (``run_dir.remove(stage, "part")``) but may keep
  its own resumable state (request caches, training checkpoints) when it can tell it is still valid;
- return a ``Manifest`` with rows/metrics/headline/outputs; the runner stamps the config hash,
  upstream run ids, times and versions and writes it last.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from phiray.config import RunConfig
from phiray.data import annotators, features, learned
from phiray.data.learned import MODEL_PATH
from phiray.pipeline import Stage, StageRun


def _llm_annotator(cfg: RunConfig) -> bool:
    """The teacher shapes annotate's labels only when an LLM writes them."""
    return cfg.annotate.annotator == "llm"


def _annotator_version(cfg: RunConfig) -> str:
    """The labels' rules beyond the config: the heuristic's version, or a hash of the judge's prompt."""
    if _llm_annotator(cfg):
        return "llm-prompt-" + hashlib.sha256(annotators.LLM_PROMPT.encode()).hexdigest()[:12]
    if cfg.annotate.annotator == "learned":
        # the weights and the code that computes the features and words they weigh
        weights = resources.files("phiray.data").joinpath(MODEL_PATH).read_bytes()
        code = open(features.__file__, "rb").read() + open(learned.__file__, "rb").read()
        return "learned-" + hashlib.sha256(weights + code).hexdigest()[:12]
    return annotators.HEURISTIC_VERSION


def _verifies(cfg: RunConfig) -> bool:
    """The sandbox shapes synthesize's output only when it verifies exercises."""
    return cfg.synthesize.verify


# The stages' code, imported when the stage runs (see the module docstring).
def _run_ingest() -> StageRun:
    from phiray.stages.ingest import run

    return run


def _run_dedup() -> StageRun:
    from phiray.stages.dedup import run

    return run


def _run_decontaminate() -> StageRun:
    from phiray.stages.decontaminate import run

    return run


def _run_annotate() -> StageRun:
    from phiray.stages.annotate import run

    return run


def _run_classify() -> StageRun:
    from phiray.stages.classify import run

    return run


def _run_filter() -> StageRun:
    from phiray.stages.filter import run

    return run


def _run_synthesize() -> StageRun:
    from phiray.stages.synthesize import run

    return run


def _run_similarity() -> StageRun:
    from phiray.stages.similarity import run

    return run


def _run_tokenize() -> StageRun:
    from phiray.stages.tokenize import run

    return run


def _run_pretrain() -> StageRun:
    from phiray.stages.pretrain import run

    return run


def _run_grow() -> StageRun:
    from phiray.stages.grow import run

    return run


def _run_finetune() -> StageRun:
    from phiray.stages.finetune import run

    return run


def _run_control() -> StageRun:
    from phiray.stages.control import run

    return run


def _run_evaluate() -> StageRun:
    from phiray.stages.evaluate import run

    return run


def _run_thesis() -> StageRun:
    from phiray.stages.thesis import run

    return run


def _run_sweep() -> StageRun:
    from phiray.stages.sweep import run

    return run


STAGES: list[Stage] = [
    Stage(
        "ingest",
        "Read the raw corpus (files, JSONL, Parquet, HF); skip bad files by reason.",
        ("ingest",),
        run=_run_ingest,
        writes=("documents", "skipped"),
    ),
    Stage(
        "dedup",
        "Remove exact and MinHash-LSH near duplicates.",
        ("dedup",),
        ("ingest",),
        run=_run_dedup,
        reads=("ingest/documents",),
        writes=("documents", "rejected"),
    ),
    Stage(
        "decontaminate",
        "Drop documents sharing long n-grams with HumanEval/MBPP.",
        ("decontaminate",),
        ("dedup",),
        run=_run_decontaminate,
        reads=("dedup/documents",),
        writes=("documents", "rejected"),
    ),
    Stage(
        "annotate",
        "Label a seeded sample for educational value (LLM or heuristic).",
        ("annotate", "teacher", "embed", "classify", "run.seed"),
        ("decontaminate",),  # active: pool + forest
        run=_run_annotate,
        reads=("decontaminate/documents",),
        writes=("labels", "rejected", "cache"),
        hashed_if=(("teacher", _llm_annotator),),
        version=_annotator_version,
    ),
    Stage(
        "classify",
        "Embed the labelled sample and fit a random forest; held-out metrics.",
        ("classify", "embed", "run.seed"),
        ("annotate",),
        run=_run_classify,
        reads=("annotate/labels",),
        writes=("model",),
    ),
    Stage(
        "filter",
        "Score every document on a Ray Data actor pool and keep the best.",
        ("filter", "embed"),
        ("classify", "decontaminate"),
        run=_run_filter,
        reads=("decontaminate/documents", "classify/model"),
        writes=("documents", "rejected"),
    ),
    Stage(
        "synthesize",
        "Generate textbooks and verified exercises through a teacher.",
        ("synthesize", "teacher", "sandbox", "run.seed"),
        ("filter",),
        run=_run_synthesize,
        reads=("filter/documents",),  # prompt snippets (decontaminate/documents when filter has not run)
        writes=("textbooks", "exercises", "validation", "heldout", "rejected", "cache"),
        hashed_if=(("sandbox", _verifies),),
    ),
    Stage(
        "similarity",
        "phi-1 §5: each HumanEval problem's nearest training exercise (embedding, AST match rate).",
        ("similarity", "embed"),
        ("synthesize",),
        needs_ray=False,
        run=_run_similarity,
        reads=("synthesize/exercises",),
        writes=("pairs.jsonl", "exercises", "pruned"),
    ),
    Stage(
        "tokenize",
        "Build the tokenizer; pack each source into fixed-length sequences.",
        ("tokenizer", "tokenize", "run.seed", "similarity.prune_tau"),
        ("decontaminate", "filter", "synthesize", "similarity"),
        run=_run_tokenize,
        after_if=(("similarity", lambda cfg: cfg.similarity.prune_tau is not None),),  # the pruned exercises
        # the sources tokenize.sources names (a source whose stage is not in the run is left out)
        reads=("filter/documents", "synthesize/textbooks", "synthesize/exercises", "decontaminate/documents"),
        writes=("tokenizer", "code", "textbooks", "exercises", "unfiltered", "exercises_sft")
        + ("exercises_full", "exercises_full_sft"),  # with similarity.prune_tau
    ),
    Stage(
        "pretrain",
        "Pretrain the phi model with DeepSpeed on Ray Train.",
        ("model", "train", "pretrain", "run.seed"),
        ("tokenize",),
        run=_run_pretrain,
        reads=("tokenize/tokenizer",),
        writes=("model", "checkpoints", "tensorboard"),
    ),
    Stage(
        "grow",
        "Grow the pretrained model into the larger shape by weight reuse; continue pretraining.",
        ("model", "train", "grow", "run.seed"),
        ("pretrain",),
        run=_run_grow,
        reads=("pretrain/model",),
        writes=("init", "model", "checkpoints", "tensorboard"),
    ),
    Stage(
        "finetune",
        "Finetune on exercises (loss on the completion only).",
        ("train", "finetune", "run.seed"),
        ("pretrain", "grow", "tokenize"),
        run=_run_finetune,
        reads=("pretrain/model", "tokenize/tokenizer"),  # grow/model instead when grow is in the run
        writes=("model", "checkpoints", "tensorboard"),
    ),
    Stage(
        "control",
        "Control model: same size and budget, unfiltered corpus only.",
        ("model", "train", "control", "run.seed"),
        ("tokenize",),
        run=_run_control,
        reads=("tokenize/tokenizer",),
        writes=("model", "checkpoints", "tensorboard"),
    ),
    Stage(
        "evaluate",
        "pass@k on held-out exercises, HumanEval and MBPP in the sandbox.",
        ("evaluate", "sandbox"),
        ("finetune", "control"),
        run=_run_evaluate,
        reads=("finetune/model", "control/model"),  # and synthesize/heldout, validation (checked where read)
        writes=("results.json", "models"),
    ),
    Stage(
        "thesis",
        "phiray's data vs the unfiltered control over seeds: pass@1 on validation and test exercises.",
        ("thesis", "model", "train", "pretrain", "grow", "finetune", "control", "evaluate", "sandbox", "run.seed"),
        ("tokenize", "pretrain", "grow", "finetune", "control", "evaluate"),
        run=_run_thesis,
        # the main seed's scores (tokenize's sources and tokenizer too, when a seed's phase still has to train)
        reads=("evaluate/results.json",),
        writes=("results.json", "seed-*"),  # seed-<N>/: that seed's models and per-task verdicts
    ),
    Stage(
        "sweep",
        "Ray Tune sweep of data-mixture weights on proxy models.",
        ("sweep", "model", "train", "pretrain", "run.seed"),
        ("tokenize",),
        run=_run_sweep,
        reads=("tokenize/tokenizer",),
        writes=("tune", "trials", "space.json", "results.csv", "results.parquet", "plot.png", "best.yaml"),
    ),
]
STAGE_BY_NAME = {s.name: s for s in STAGES}
