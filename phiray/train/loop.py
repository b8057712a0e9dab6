"""The one training loop shared by pretrain, grow (continued pretraining), finetune, control and sweeps.

Entry points (``spec`` is the :class:`~phiray.train.spec.TrainSpec` :func:`phiray.train.driver.build_spec` makes):

- ``train_loop_per_worker({"spec": spec})``: the Ray Train ``TorchTrainer`` function. Rank/world from
  ``ray.train.get_context()``, resume from ``ray.train.get_checkpoint()``, metrics and checkpoints through
  ``ray.train.report``.
- ``train_single_process(spec, report=None)``: the same loop in the calling process (world size 1, plain
  PyTorch, no process group, no checkpoints) for Ray Tune trials and benchmarks; ``report(metrics)`` is
  called at every train record and evaluation (e.g. ``ray.tune.report``). Returns the history.

Per optimizer step: ``grad_accum`` micro-batches drawn by :class:`~phiray.train.data.MixtureSampler`
(a pure function of seed/step/rank, so a resumed worker sees exactly the batches it would have seen),
then the optimizer step. Every ``log_every`` steps a train record (loss averaged over ranks, lr, grad
norm, tokens/s, MFU); every ``eval_every`` a validation loss per source; every ``checkpoint_every`` a
checkpoint holding the engine state, HF weights and the history so far. Each of these is reported (Ray
Train's callbacks write them to TensorBoard, :mod:`phiray.train.tracking`). The history is part of the
checkpoint, so after a restart the steps between the last checkpoint and the failure are recorded once
(their first, discarded execution is dropped with the worker that ran it).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Callable

import numpy as np
import torch

from phiray.model.io import load_model, save_model
from phiray.model.presets import build_model, count_params, resolve_attn_implementation
from phiray.train.data import MixtureSampler, TokenSource, validation_rows
from phiray.train.engine import DeepSpeedEngine, TorchEngine, lm_loss_sum
from phiray.train.schedule import grad_accumulation, mfu, peak_flops
from phiray.train.spec import TrainSpec

STATE_FILE = "trainer_state.json"
Report = Callable[[dict[str, Any], "str | None"], None]


def _device(use_gpu: bool) -> torch.device:
    if use_gpu and torch.cuda.is_available():
        import ray.train.torch

        try:
            return ray.train.torch.get_device()
        except RuntimeError:
            # Outside a Ray Train worker (a Tune trial, a plain process): Ray already narrowed
            # CUDA_VISIBLE_DEVICES to this process's GPU(s), so the first visible one is ours.
            return torch.device("cuda", 0)
    return torch.device("cpu")


def _precision(requested: str, device: torch.device) -> str:
    if requested == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return requested


def _build_model(spec: TrainSpec, attn: str):
    if spec.init_from:
        with spec.rundir().local_dir(spec.init_from, upload=False) as local:
            return load_model(local, attn_implementation=attn)
    return build_model(spec.model, attn, seed=spec.seed, eos_token_id=spec.eos_token_id)


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def evaluate(
    engine, sources: dict[str, TokenSource], n_rows: int, micro: int, rank: int, world: int
) -> dict[str, float]:
    """Validation loss per source (token-weighted over the first ``n_rows`` rows, all ranks together)."""
    out = {}
    for name, source in sources.items():
        total, count = 0.0, 0.0
        rows = validation_rows(source, n_rows, rank, world)
        for start in range(0, len(rows), micro):
            ids, labels = source.take(rows[start : start + micro])
            logits = engine.eval_forward(torch.as_tensor(ids, device=engine.device))
            loss, n = lm_loss_sum(logits, torch.as_tensor(labels, device=engine.device))
            total, count = total + float(loss), count + float(n)
        total, count = _all_reduce([total, count], engine.device)
        if count:
            out[f"val_loss/{name}"] = total / count
    if out:
        out["val_loss"] = float(np.mean(list(out.values())))
    return out


class Trainer:
    """State of one worker's run of the loop (kept small: the loop body is :meth:`run`)."""

    def __init__(self, spec: TrainSpec, rank: int, world: int, distributed: bool):
        self.spec, self.rank, self.world = spec, rank, world
        self.phase, train = spec.phase, spec.train
        self.device = _device(train.use_gpu)
        self.precision = _precision(train.precision, self.device)
        self.attn = resolve_attn_implementation(train.attn_implementation, self.device.type == "cuda")
        self.grad_accum = grad_accumulation(self.phase.global_batch_size, self.phase.micro_batch_size, world)
        torch.manual_seed(spec.seed)
        model = _build_model(spec, self.attn)
        self.n_params = count_params(model, non_embedding=True)
        self.n_layer, self.d_model = model.config.num_hidden_layers, model.config.hidden_size  # attention FLOPs
        if train.strategy == "deepspeed" and distributed:
            self.engine = DeepSpeedEngine(
                model,
                self.phase,
                grad_accum=self.grad_accum,
                world_size=world,
                zero_stage=train.zero_stage,
                precision=self.precision,
                offload_optimizer=train.offload_optimizer,
            )
        else:
            self.engine = TorchEngine(
                model,
                self.phase,
                grad_accum=self.grad_accum,
                distributed=distributed,
                device=self.device,
                precision=self.precision,
            )
        rd = spec.rundir()
        self.train_sources = {n: TokenSource(rd.fs, rd.path(p)) for n, p in spec.train_sources.items()}
        self.val_sources = {n: TokenSource(rd.fs, rd.path(p)) for n, p in spec.val_sources.items()}
        self.sampler = MixtureSampler(
            self.train_sources,
            spec.mixture,
            spec.seed,
            micro_batches=self.grad_accum,
            world=world,
            by=self.phase.mixture_unit,
        )
        device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        self.peak = peak_flops(train.peak_flops_per_device, device_name)
        self.step = 0
        self.history: dict[str, Any] = {"train": [], "val": [], "resumes": [], "sources": {}}

    # ------------------------------------------------------------------ state
    def resume_from(self, checkpoint) -> bool:
        """Restore from a Ray Train or Ray Tune ``Checkpoint`` (``get_checkpoint()``; None: a fresh start)."""
        if checkpoint is None:
            return False
        with checkpoint.as_directory() as directory:
            self.restore(directory)
        return True

    def restore(self, directory: str) -> None:
        self.engine.load(directory)
        with open(os.path.join(directory, STATE_FILE)) as f:
            state = json.load(f)
        self.step, self.history = int(state["step"]), state["history"]
        self.history["resumes"].append(self.step)

    def save(self, directory: str) -> None:
        self.engine.save(directory)
        if self.rank == 0:
            with open(os.path.join(directory, STATE_FILE), "w") as f:
                json.dump({"step": self.step, "history": self.history}, f)

    # ------------------------------------------------------------------ loop
    def _eval(self) -> dict[str, float]:
        n_rows = self.phase.eval_batches * self.phase.micro_batch_size * self.world
        metrics = evaluate(self.engine, self.val_sources, n_rows, self.phase.micro_batch_size, self.rank, self.world)
        self.history["val"].append({"step": self.step, **metrics})
        return metrics

    def _one_step(self) -> tuple[float, float | None, dict[str, int]]:
        losses, counts = [], {}
        micro = self.phase.micro_batch_size
        for m in range(self.grad_accum):
            ids, labels, used = self.sampler.batch(self.step, m, self.rank, micro)
            for k, v in used.items():
                counts[k] = counts.get(k, 0) + v
            losses.append(
                self.engine.micro_step(
                    torch.as_tensor(ids, device=self.device), torch.as_tensor(labels, device=self.device)
                )
            )
        grad_norm = self.engine.optimizer_step()
        self.step += 1
        return float(np.mean(losses)), grad_norm, counts

    def run(self, report: Report, checkpoint_every: int | None) -> dict[str, Any]:
        phase, seq_len = self.phase, self.spec.seq_len
        tokens_per_step = phase.global_batch_size * seq_len
        if self.step == 0 and not self.history["val"]:
            report(self._eval() | {"step": 0}, None)
        window_loss, window_steps, window_time = 0.0, 0, 0.0
        while self.step < phase.max_steps:
            t0 = time.perf_counter()
            loss, grad_norm, counts = self._one_step()
            window_time += time.perf_counter() - t0
            window_loss, window_steps = window_loss + loss, window_steps + 1
            for k, v in counts.items():
                self.history["sources"][k] = self.history["sources"].get(k, 0) + v
            last = self.step == phase.max_steps
            metrics: dict[str, Any] = {"step": self.step}
            logged = self.step % phase.log_every == 0 or last
            if logged:
                mean_loss = _all_reduce([window_loss / window_steps], self.device)[0] / self.world
                tps = tokens_per_step * window_steps / window_time
                utilisation = mfu(
                    self.n_params,
                    tps,
                    self.peak,
                    self.world,
                    n_layer=self.n_layer,
                    d_model=self.d_model,
                    seq_len=seq_len,
                )
                record = {
                    "step": self.step,
                    "loss": mean_loss,
                    "lr": self.engine.lr,
                    "grad_norm": grad_norm,
                    "tokens_per_s": tps,
                    "mfu": utilisation,
                }
                self.history["train"].append(record)
                metrics |= record
                window_loss, window_steps, window_time = 0.0, 0, 0.0
            evaluated = self.step % phase.eval_every == 0 or last
            if evaluated:
                metrics |= self._eval()
            if checkpoint_every and (self.step % checkpoint_every == 0 or last):
                with tempfile.TemporaryDirectory(prefix="phiray-ckpt-") as tmp:
                    self.save(tmp)
                    self._save_hf(os.path.join(tmp, "hf"))
                    report(metrics, tmp)
            elif evaluated or logged:  # every train record reaches the trackers, not only evaluations
                report(metrics, None)
        return self.history

    # ------------------------------------------------------------------ outputs
    def _save_hf(self, directory: str) -> None:
        """The checkpoint's ``hf/``: weights + config + tokenizer, loadable by transformers and vLLM as it is."""
        state = self.engine.full_state_dict()  # collective under ZeRO-3: every rank calls it
        if self.rank == 0:
            with self.spec.rundir().local_dir(self.spec.tokenizer_dir, upload=False) as tok_dir:
                save_model(self.engine.module, directory, tokenizer_dir=tok_dir, state_dict=state)

    def info(self) -> dict[str, Any]:
        return {
            "stage": self.spec.stage,
            "steps": self.step,
            "engine_global_steps": self.engine.global_steps,
            "precision": self.precision,
            "attn_implementation": self.attn,
            "world_size": self.world,
            "strategy": self.spec.train.strategy,
            "n_params_non_embedding": self.n_params,
            "mixture": self.spec.mixture,
            "history": self.history,
        }

    def save_final(self) -> None:
        """The final model (HF format + tokenizer + history) at ``spec.output_dir``, by rank 0."""
        state = self.engine.full_state_dict()
        if self.rank != 0:
            return
        rd = self.spec.rundir()
        rd.remove(self.spec.output_dir)
        with (
            rd.local_dir(self.spec.tokenizer_dir, upload=False) as tok_dir,
            rd.local_dir(self.spec.output_dir, download=False) as out,
        ):
            save_model(self.engine.module, out, tokenizer_dir=tok_dir, info=self.info(), state_dict=state)


def _write_worker_info(spec: TrainSpec, rank: int) -> None:
    """pid per rank (operators and the fault-tolerance test kill a worker by it)."""
    if spec.workers_dir:
        spec.rundir().write_json(
            f"{spec.workers_dir}/rank-{rank}.json", {"pid": os.getpid(), "rank": rank, "started": time.time()}
        )


def _quiet_worker_logs() -> None:
    """Two lines a fit would otherwise print once per report or once per worker, in every phase: Ray Train's
    per-report INFO line ("Reporting training result N: TrainingReport(...)", a dump of every metric, which
    the trackers and the manifest already hold) and torch's deprecation warning for the
    ``all_gather_into_tensor`` DeepSpeed's ZeRO calls (nothing phiray can change)."""
    import logging
    import warnings

    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)  # Ray names that logger by its file
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.* is deprecated", category=FutureWarning)


def train_loop_per_worker(config: dict[str, TrainSpec]) -> None:
    """Ray Train worker function (``TorchTrainer(train_loop_per_worker, train_loop_config={"spec": spec})``)."""
    import ray.train
    from ray.train import Checkpoint

    _quiet_worker_logs()
    spec = config["spec"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if spec.train.strategy == "deepspeed":
        import deepspeed

        # Reuses the process group Ray Train set up (gloo on CPU, nccl on GPU).
        deepspeed.init_distributed(dist_backend="nccl" if spec.train.use_gpu else "gloo")
    trainer = Trainer(spec, rank, world, distributed=True)
    trainer.resume_from(ray.train.get_checkpoint())
    _write_worker_info(spec, rank)

    def report(metrics: dict[str, Any], directory: str | None) -> None:
        clean = {k: v for k, v in metrics.items() if v is not None}
        ray.train.report(clean, checkpoint=Checkpoint.from_directory(directory) if directory else None)

    trainer.run(report, spec.phase.checkpoint_every)
    trainer.save_final()


def train_single_process(spec: TrainSpec, report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The loop in this process (world 1, plain PyTorch): Tune trials, benchmarks. Returns the history."""
    single = spec.model_copy(update={"train": spec.train.model_copy(update={"strategy": "ddp"})})
    trainer = Trainer(single, 0, 1, distributed=False)
    trainer.run(lambda metrics, _dir: report(metrics) if report else None, checkpoint_every=None)
    if spec.output_dir:
        trainer.save_final()
    return trainer.history
