"""Driver side of training: resolve token sources, build the worker spec, run Ray Train, read results.

``fit_phase(cfg, rd, phase, init_from)`` is what every training stage calls (pretrain, grow, finetune,
control); the sweep builds a :class:`~phiray.train.spec.TrainSpec` per trial with :func:`build_spec` and runs
the loop inside a Tune trial (``mixture=`` overrides the weights).

Fault tolerance: ``FailureConfig(max_failures=train.max_failures)`` restarts the worker group after a
worker dies; the loop resumes from the last reported checkpoint (``<stage>/checkpoints/<name>/``, kept
two deep). The run name hashes the spec, so a changed config never resumes a stale run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from typing import Any

from phiray.config import ModelConfig, RunConfig
from phiray.model.card import training_facts, write_card
from phiray.model.tokenizer import load_tokenizer
from phiray.rundir import Manifest, RunDir
from phiray.train.spec import TrainSpec

log = logging.getLogger("phiray")

TOKENIZER_DIR = "tokenize/tokenizer"


def source_paths(rd: RunDir, name: str) -> tuple[str, str] | None:
    """(train, val) relative paths of a packed source, or None when tokenize did not produce it."""
    train, val = f"tokenize/{name}/train", f"tokenize/{name}/val"
    if not rd.parquet_files(train):
        return None
    return train, val


def resolve_mixture(rd: RunDir, mixture: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Normalised weights over the sources that exist (missing ones are skipped with a warning)."""
    if not mixture:
        raise ValueError("empty mixture: name at least one token source")
    present = {n: w for n, w in mixture.items() if w > 0 and source_paths(rd, n) is not None}
    missing = sorted(n for n, w in mixture.items() if w > 0 and n not in present)
    for name in missing:
        log.warning("training: token source %r not found under tokenize/ (skipped)", name)
    if not present:
        raise ValueError(
            f"no token source of the mixture {sorted(mixture)} exists under {rd.path('tokenize')}: "
            "run the tokenize stage first"
        )
    total = sum(present.values())
    return {n: w / total for n, w in present.items()}, missing


def _seq_len(rd: RunDir, train_path: str) -> int:
    import pyarrow.parquet as pq

    first = rd.parquet_files(train_path)[0]
    with rd.fs.open_input_file(first) as handle:
        table = pq.read_table(handle, columns=["input_ids"])
    return len(table.column("input_ids")[0]) if table.num_rows else 0


def _tokenizer_info(rd: RunDir) -> tuple[int, int]:
    with rd.local_dir(TOKENIZER_DIR, upload=False) as local:
        tok = load_tokenizer(local)
    return len(tok), tok.eos_token_id


def build_spec(
    cfg: RunConfig,
    rd: RunDir,
    phase: str,
    *,
    stage: str | None = None,
    init_from: str | None = None,
    model_cfg: ModelConfig | None = None,
    mixture: dict[str, float] | None = None,
    output_dir: str | None = None,
) -> TrainSpec:
    """The spec every worker receives (see :mod:`phiray.train.loop`)."""
    stage = stage or phase
    phase_cfg = cfg.section(phase)
    weights, missing = resolve_mixture(rd, mixture if mixture is not None else dict(phase_cfg.mixture))
    eval_names = list(dict.fromkeys(list(weights) + list(phase_cfg.eval_sources)))
    val = {
        n: source_paths(rd, n)[1]
        for n in eval_names
        if source_paths(rd, n) is not None and rd.exists(source_paths(rd, n)[1])
    }
    seq_len = _seq_len(rd, source_paths(rd, next(iter(weights)))[0])
    vocab_len, eos = _tokenizer_info(rd)
    mc = model_cfg or cfg.model
    if init_from is None:
        if seq_len > mc.n_ctx:
            raise ValueError(f"tokenize.seq_len ({seq_len}) exceeds model.n_ctx ({mc.n_ctx})")
        if vocab_len > mc.vocab_size:
            raise ValueError(f"tokenizer has {vocab_len} tokens but model.vocab_size is {mc.vocab_size}")
    # Deep copies: the spec must not share (mutable) sections with the run's config.
    return TrainSpec(
        stage=stage,
        run_root=rd.root,
        fs=rd.fs,
        seed=cfg.run.seed,
        model=mc.model_copy(deep=True),
        init_from=init_from,
        eos_token_id=eos,
        phase=phase_cfg.model_copy(deep=True),
        train=cfg.train.model_copy(deep=True),
        train_sources={n: source_paths(rd, n)[0] for n in weights},
        val_sources=val,
        mixture=weights,
        missing_sources=missing,
        seq_len=seq_len,
        tokenizer_dir=TOKENIZER_DIR,
        output_dir=output_dir or f"{stage}/model",
        workers_dir=f"{stage}/checkpoints/workers",
    )


def spec_hash(spec: TrainSpec) -> str:
    """Identity of a phase's Ray Train run (its checkpoints resume only the same spec); tracking is left out."""
    plain = spec.plain()
    plain["train"].pop("tracking", None)
    blob = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def make_trainer(spec: TrainSpec, rd: RunDir):
    """A ``TorchTrainer`` for ``spec`` (gloo on CPU, nccl on GPU; checkpoints in the run dir; no placement-group
    cleaner on a cluster without a State API: phiray/train/trainer.py)."""
    from ray.train import CheckpointConfig, FailureConfig, ScalingConfig
    from ray.train import RunConfig as TrainRunConfig

    from phiray.train.loop import train_loop_per_worker
    from phiray.train.rendezvous import NodeBoundTorchConfig
    from phiray.train.tracking import train_callbacks
    from phiray.train.trainer import PhirayTorchTrainer

    train = spec.train
    resources = {"CPU": train.cpus_per_worker} | ({"GPU": 1} if train.use_gpu else {})
    return PhirayTorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(
            num_workers=train.num_workers, use_gpu=train.use_gpu, resources_per_worker=resources
        ),
        # The rendezvous store on the node's address, not every interface (phiray/train/rendezvous.py).
        torch_config=NodeBoundTorchConfig(backend="nccl" if train.use_gpu else "gloo"),
        run_config=TrainRunConfig(
            name=f"{posixpath.basename(spec.stage)}-{spec_hash(spec)}",  # thesis/seed-N/pretrain: one level
            storage_path=rd.path(spec.stage, "checkpoints"),
            storage_filesystem=rd.fs,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=train_callbacks(spec),
        ),
    )


def summarize(history: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers of a history: first/last validation loss, last train record, throughput."""
    val, train = history.get("val", []), history.get("train", [])
    out: dict[str, Any] = {}
    if val:
        out["val_loss_start"], out["val_loss_final"] = val[0].get("val_loss"), val[-1].get("val_loss")
    if train:
        out["train_loss_final"] = train[-1]["loss"]
        rates = [r["tokens_per_s"] for r in train[1:]] or [train[0]["tokens_per_s"]]
        out["tokens_per_s"] = sum(rates) / len(rates)
        mfus = [r["mfu"] for r in train if r.get("mfu") is not None]
        out["mfu"] = sum(mfus) / len(mfus) if mfus else None
    return out


def fit_phase(
    cfg: RunConfig,
    rd: RunDir,
    phase: str,
    init_from: str | None = None,
    *,
    stage: str | None = None,
    model_cfg: ModelConfig | None = None,
    mixture: dict[str, float] | None = None,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """Train one phase on Ray Train; returns the training info the final model was saved with."""
    spec = build_spec(
        cfg, rd, phase, stage=stage, init_from=init_from, model_cfg=model_cfg, mixture=mixture, output_dir=output_dir
    )
    log.info(
        "%s: training on %s for %d steps (%s, %d workers)",
        spec.stage,
        spec.mixture,
        spec.phase.max_steps,
        spec.train.strategy,
        spec.train.num_workers,
    )
    result = make_trainer(spec, rd).fit()
    if getattr(result, "error", None):
        raise RuntimeError(f"{spec.stage}: training failed: {result.error}")
    return finish_fit(cfg, rd, spec, result.checkpoint.path if result.checkpoint else None)


def train_in_process(spec: TrainSpec, num_threads: int) -> None:
    """One phase trained in this process (a Ray task's): world 1, the phase's own global batch by gradient
    accumulation, the final model saved to the run dir as a fit saves it."""
    import torch

    from phiray.train.loop import train_single_process

    torch.set_num_threads(max(1, num_threads))
    train_single_process(spec)


def fit_phase_task(cfg: RunConfig, rd: RunDir, phase: str, init_from: str | None = None, *, stage: str, mixture=None):
    """(spec, ObjectRef) of one phase trained in a Ray task (:func:`train_in_process`) holding the phase's
    CPUs (or one GPU): several such phases train side by side without a Ray Train start-up each.
    :func:`finish_fit` after ``ray.get`` writes its card, as :func:`fit_phase` does."""
    import ray

    spec = build_spec(cfg, rd, phase, stage=stage, init_from=init_from, mixture=mixture)
    train = spec.train
    cpus = 1 if train.use_gpu else max(1, int(train.cpus_per_worker))
    log.info("%s: training on %s for %d steps (one process)", spec.stage, spec.mixture, spec.phase.max_steps)
    ref = (
        ray.remote(train_in_process)
        .options(num_cpus=cpus, num_gpus=1 if train.use_gpu else 0, max_retries=0)
        .remote(spec, cpus)
    )
    return spec, ref


def finish_fit(cfg: RunConfig, rd: RunDir, spec: TrainSpec, checkpoint: str | None = None) -> dict[str, Any]:
    """The training info a phase's final model was saved with, plus its summary; writes the model card."""
    info = rd.read_json(posixpath.join(spec.output_dir, "phiray_training.json"))
    info["missing_sources"] = spec.missing_sources
    info["checkpoint"] = checkpoint
    info["summary"] = summarize(info["history"])
    info["tensorboard"] = spec.tensorboard_dir if spec.train.tracking.tensorboard else None
    write_card(
        rd,
        spec.output_dir,
        training_facts(info, spec.plain(), config_hash=run_config_hash(cfg), decontamination=decontamination_facts(rd)),
    )
    return info


def run_config_hash(cfg: RunConfig) -> str:
    """Hash of the whole resolved run config (the model card's lineage)."""
    return hashlib.sha256(cfg.to_yaml().encode()).hexdigest()[:16]


def decontamination_facts(rd: RunDir) -> dict[str, Any] | None:
    """What the decontaminate stage removed, from its manifest (None when the run has none)."""
    manifest = rd.read_manifest("decontaminate")
    return None if manifest is None else {"rows": manifest.rows, "headline": manifest.headline}


def phase_manifest(
    stage: str,
    info: dict[str, Any],
    extra_metrics: dict[str, Any] | None = None,
    extra_headline: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest of a training stage: curves, throughput, mixture, resumes; headline = losses."""
    history, summary = info["history"], info["summary"]
    metrics = {
        "curve": {"train": history["train"], "val": history["val"]},
        "summary": summary,
        "mixture": info["mixture"],
        "sequences_seen": history.get("sources", {}),
        "resumes": history.get("resumes", []),
        "missing_sources": info.get("missing_sources", []),
        "engine_global_steps": info.get("engine_global_steps"),
        "strategy": info.get("strategy"),
        "precision": info.get("precision"),
        "attn_implementation": info.get("attn_implementation"),
        "world_size": info.get("world_size"),
        "n_params_non_embedding": info.get("n_params_non_embedding"),
        "checkpoint": info.get("checkpoint"),
        "tensorboard": info.get("tensorboard"),
    } | (extra_metrics or {})
    headline = {
        "steps": info["steps"],
        "val_loss_start": summary.get("val_loss_start"),
        "val_loss_final": summary.get("val_loss_final"),
        "tokens_per_s": summary.get("tokens_per_s"),
    }
    return Manifest(
        stage=stage,
        rows={"steps": info["steps"], "restarts": len(history.get("resumes", []))},
        metrics=metrics,
        headline=headline | (extra_headline or {}),
        outputs=[f"{stage}/model", f"{stage}/checkpoints"] + [p for p in [info.get("tensorboard")] if p],
    )
