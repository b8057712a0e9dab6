"""Two interchangeable engines behind one small interface (the `train.strategy` switch):

- :class:`DeepSpeedEngine`: ``deepspeed.initialize`` with ZeRO (stage from config), bf16 on GPU / fp32 on
  CPU, gradient accumulation and clipping done by DeepSpeed, checkpoints with ``save_checkpoint``.
- :class:`TorchEngine`: plain PyTorch (DDP through ``ray.train.torch.prepare_model`` when distributed, or a
  single process for Tune trials and the benchmark baseline), the same optimizer, schedule and clipping.

Interface: ``micro_step(input_ids, labels) -> loss`` (forward + backward), ``optimizer_step() -> grad_norm``,
``lr``, ``module`` (the bare HF model), ``eval_forward(input_ids)``, ``save(dir)`` / ``load(dir)``.
"""

from __future__ import annotations

import os

import torch

from phiray.config import PhaseConfig
from phiray.data.packing import IGNORE
from phiray.train.schedule import deepspeed_config, warmup_linear_decay


def lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over labelled positions, and their count."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.size(-1))
    shift_labels = labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE, reduction="sum")
    return loss, (shift_labels != IGNORE).sum()


def make_optimizer(model: torch.nn.Module, phase: PhaseConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and LayerNorm weights (the usual GPT recipe)."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": phase.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=phase.lr, betas=tuple(phase.betas), eps=phase.eps)


def make_scheduler(optimizer: torch.optim.Optimizer, phase: PhaseConfig):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_linear_decay(phase.warmup_steps, phase.max_steps, phase.min_lr_ratio)
    )


def _mean_loss(model, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss over the labelled positions. When some positions carry no label (finetuning:
    the prompt and the padding, ~70% of a tiny run's exercise sequences) the output head runs on the labelled
    positions only: the same loss and gradients without the vocabulary-sized matmul for the rest, which at
    a small width is most of a step's compute."""
    shift_labels = labels[:, 1:]
    labelled = shift_labels != IGNORE
    if bool(labelled.all()):
        total, count = lm_loss_sum(model(input_ids=input_ids).logits, labels)
        return total / count.clamp(min=1)
    keep = torch.nn.functional.pad(labelled, (0, 1), value=False)  # positions whose next token is labelled
    head = getattr(model, "module", model).get_output_embeddings()  # through DeepSpeed's / DDP's wrapper
    # the wrapper's own forward still runs (gradient hooks, ZeRO gathering); the head sees [n, d], gives [n, V]
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][keep], *args[1:]))
    try:
        logits = model(input_ids=input_ids).logits
    finally:
        handle.remove()
    total = torch.nn.functional.cross_entropy(logits.float(), shift_labels[labelled], reduction="sum")
    return total / labelled.sum().clamp(min=1)


class DeepSpeedEngine:
    def __init__(
        self,
        model,
        phase: PhaseConfig,
        *,
        grad_accum: int,
        world_size: int,
        zero_stage: int,
        precision: str,
        offload_optimizer: bool = False,
    ):
        import deepspeed

        optimizer = make_optimizer(model, phase)
        config = deepspeed_config(
            micro_batch=phase.micro_batch_size,
            grad_accum=grad_accum,
            world_size=world_size,
            zero_stage=zero_stage,
            grad_clip=phase.grad_clip,
            precision=precision,
            offload_optimizer=offload_optimizer,
        )
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=make_scheduler(optimizer, phase), config=config
        )
        self.device = self.engine.device
        self.zero_stage = zero_stage

    @property
    def module(self):
        return self.engine.module

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def micro_step(self, input_ids: torch.Tensor, labels: torch.Tensor) -> float:
        self.engine.train()
        loss = _mean_loss(self.engine, input_ids, labels)
        self.engine.backward(loss)
        self.engine.step()  # DeepSpeed steps the optimizer/scheduler only at the accumulation boundary
        return float(loss.detach())

    def optimizer_step(self) -> float | None:
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else float(norm)

    @torch.no_grad()
    def eval_forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.engine.eval()
        return self.engine(input_ids=input_ids).logits

    @property
    def global_steps(self) -> int:
        return int(self.engine.global_steps)

    def save(self, directory: str) -> None:
        self.engine.save_checkpoint(directory, tag="state")

    def load(self, directory: str) -> None:
        path, _ = self.engine.load_checkpoint(directory, tag="state")
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint in {directory}")

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The full fp32 weights on every rank (ZeRO-3 gathers the shards first)."""
        if self.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                return {k: v.detach().float().cpu().clone() for k, v in self.module.state_dict().items()}
        return {k: v.detach().float().cpu() for k, v in self.module.state_dict().items()}


class TorchEngine:
    def __init__(
        self, model, phase: PhaseConfig, *, grad_accum: int, distributed: bool, device: torch.device, precision: str
    ):
        self.device, self.grad_accum, self.grad_clip = device, grad_accum, phase.grad_clip
        model = model.to(device)
        if distributed:
            import ray.train.torch

            model = ray.train.torch.prepare_model(model, move_to_device=False)
        self.model = model
        self.optimizer = make_optimizer(self._bare(), phase)
        self.scheduler = make_scheduler(self.optimizer, phase)
        self.autocast = precision in ("bf16", "fp16") and device.type == "cuda"
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        self._micro, self.global_steps = 0, 0

    def _bare(self):
        return getattr(self.model, "module", self.model)

    @property
    def module(self):
        return self._bare()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def micro_step(self, input_ids: torch.Tensor, labels: torch.Tensor) -> float:
        self.model.train()
        self._micro += 1
        boundary = self._micro % self.grad_accum == 0
        sync = getattr(self.model, "no_sync", None)
        ctx = sync() if (sync is not None and not boundary) else torch.enable_grad()
        with ctx, torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            loss = _mean_loss(self.model, input_ids, labels)
            (loss / self.grad_accum).backward()
        return float(loss.detach())

    def optimizer_step(self) -> float | None:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_steps += 1
        return float(norm)

    @torch.no_grad()
    def eval_forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
            return self._bare()(input_ids=input_ids).logits

    def save(self, directory: str) -> None:
        torch.save(
            {
                "model": self._bare().state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "global_steps": self.global_steps,
            },
            os.path.join(directory, "torch_state.pt"),
        )

    def load(self, directory: str) -> None:
        state = torch.load(os.path.join(directory, "torch_state.pt"), map_location=self.device, weights_only=False)
        self._bare().load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.global_steps = int(state["global_steps"])

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu() for k, v in self._bare().state_dict().items()}
