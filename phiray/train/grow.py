"""The grow phase (phi-1's weight reuse): grow a pretrained model into ``grow.target`` (layer map + width/head
tiling, :mod:`phiray.model.growth`), save it as ``<stage>/init/``, measure the validation loss at step 0 of the
grown model beside the small model's and a fresh initialisation's, then continue pretraining it (``grow`` phase
settings, pretrain's mixture unless ``grow.mixture`` is set). Shared by the ``grow`` stage and the ``thesis``
stage (each seed's own pretrained model, under ``thesis/seed-<N>/grow``).
"""

from __future__ import annotations

from typing import Any

import torch

from phiray.config import ModelConfig, RunConfig
from phiray.model.io import load_model, save_model
from phiray.model.presets import build_model, count_params
from phiray.rundir import Manifest, RunDir
from phiray.train.data import TokenSource
from phiray.train.driver import build_spec, fit_phase, phase_manifest
from phiray.train.spec import TrainSpec


class _Evaluator:
    """The two things :func:`phiray.train.loop.evaluate` needs from an engine."""

    def __init__(self, model, device: torch.device):
        self.model, self.device = model.to(device).eval(), device

    @torch.no_grad()
    def eval_forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits


def assigned_device() -> torch.device:
    """The GPU Ray assigned to this task when torch can use it; else the CPU (a node that advertises a
    GPU torch cannot see, as in the CPU rehearsal of a GPU group, still computes correctly)."""
    import ray

    gpus = ray.get_gpu_ids() if ray.is_initialized() else []
    return torch.device("cuda") if gpus and torch.cuda.is_available() else torch.device("cpu")


def grow_and_compare(spec: TrainSpec, target_cfg: ModelConfig, scale_inputs: bool) -> dict[str, Any]:
    """Grow ``spec.init_from`` (the small model), save ``<stage>/init`` (+ tokenizer) and return step-0
    validation losses (small/grown/fresh)."""
    from phiray.model.growth import grow_model, layer_map
    from phiray.train.loop import evaluate

    rd = spec.rundir()
    init_dir = f"{spec.stage}/init"
    with rd.local_dir(spec.init_from, upload=False) as small_dir:
        small = load_model(small_dir)
    grown = grow_model(small, target_cfg, scale_inputs=scale_inputs)
    fresh = build_model(target_cfg, seed=spec.seed, eos_token_id=small.config.eos_token_id)
    rd.remove(init_dir)
    with rd.local_dir(spec.tokenizer_dir, upload=False) as tok_dir, rd.local_dir(init_dir, download=False) as out:
        save_model(grown, out, tokenizer_dir=tok_dir)
    sources = {n: TokenSource(rd.fs, rd.path(p)) for n, p in spec.val_sources.items()}
    phase = spec.phase
    n_rows = phase.eval_batches * phase.micro_batch_size * spec.train.num_workers
    device = assigned_device()
    losses = {
        name: evaluate(_Evaluator(m, device), sources, n_rows, phase.micro_batch_size, 0, 1)
        for name, m in (("small", small), ("grown", grown), ("fresh", fresh))
    }
    return {
        "step0": losses,
        "device": str(device),
        "layer_map": layer_map(target_cfg.n_layer, small.config.num_hidden_layers),
        "params": {"small": count_params(small), "grown": count_params(grown)},
    }


def grow_phase(cfg: RunConfig, rd: RunDir, stage: str = "grow", pretrained: str = "pretrain/model") -> Manifest:
    """Grow ``pretrained`` into ``grow.target`` and continue pretraining it, under ``<stage>/`` (the thesis
    stage grows each seed's own pretrained model under ``thesis/seed-<N>/grow``)."""
    import ray

    if not rd.exists(pretrained, "config.json"):
        raise RuntimeError(f"grow needs {pretrained}: run the pretrain stage first")
    mixture = dict(cfg.grow.mixture) or dict(cfg.pretrain.mixture)
    rd.remove(stage, "model")
    # The spec is built against the small model only to resolve sources; training starts from <stage>/init.
    spec = build_spec(cfg, rd, "grow", stage=stage, init_from=pretrained, model_cfg=cfg.grow.target, mixture=mixture)
    resources = {"num_gpus": 1} if cfg.train.use_gpu else {}
    task = ray.remote(num_cpus=1, **resources)(grow_and_compare)
    growth = ray.get(task.remote(spec, cfg.grow.target, cfg.grow.scale_inputs))
    info = fit_phase(
        cfg, rd, "grow", init_from=f"{stage}/init", stage=stage, model_cfg=cfg.grow.target, mixture=mixture
    )
    step0 = {k: v.get("val_loss") for k, v in growth["step0"].items()}
    return phase_manifest(
        stage, info, extra_metrics={"growth": growth}, extra_headline={f"step0_{k}": v for k, v in step0.items()}
    )
