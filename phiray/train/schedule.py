"""Learning-rate schedule, DeepSpeed config and throughput metrics (plain functions, no Ray)."""

from __future__ import annotations

from typing import Any, Callable

# Dense bf16 peak FLOP/s per device (vendor datasheets, without sparsity). CPUs have no entry: MFU is
# reported only when `train.peak_flops_per_device` is set or the device is known.
PEAK_FLOPS: dict[str, float] = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "V100": 125e12,
}


def warmup_linear_decay(warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> Callable[[int], float]:
    """LR multiplier for step ``s`` (0-based, the step about to be taken): linear warmup then linear decay."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, max_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)

    return factor


def grad_accumulation(global_batch: int, micro_batch: int, world_size: int) -> int:
    """Micro-batches per optimizer step; the global batch must split evenly."""
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise ValueError(
            f"global_batch_size ({global_batch}) must be a multiple of micro_batch_size x workers "
            f"({micro_batch} x {world_size})"
        )
    return global_batch // per_step


def deepspeed_config(
    *,
    micro_batch: int,
    grad_accum: int,
    world_size: int,
    zero_stage: int,
    grad_clip: float,
    precision: str,
    offload_optimizer: bool = False,
) -> dict[str, Any]:
    """DeepSpeed config for phiray's loop (optimizer and scheduler are passed as objects)."""
    zero: dict[str, Any] = {"stage": zero_stage}
    if zero_stage >= 1:
        zero.update(overlap_comm=False, contiguous_gradients=True, reduce_scatter=True)
    if offload_optimizer and zero_stage >= 1:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world_size,
        "gradient_clipping": grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def peak_flops(configured: float | None, device_name: str | None) -> float | None:
    """Peak FLOP/s of one device: the configured value, else the table by device name, else None."""
    if configured:
        return configured
    if not device_name:
        return None
    for key, value in PEAK_FLOPS.items():
        if key.lower() in device_name.lower():
            return value
    return None


def attention_flops_per_token(n_layer: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token of the attention scores and the weighted sum (QK^T and AV), forward and
    backward: 2 matmuls x 2 FLOPs x seq_len x d_model per layer forward, x3 with the backward pass. Counted
    over the full (non-causal) square as PaLM (appendix B) and llm-foundry do, so MFU figures compare."""
    return 12.0 * n_layer * d_model * seq_len


def mfu(
    n_params: int,
    tokens_per_s: float,
    peak: float | None,
    world_size: int,
    *,
    n_layer: int = 0,
    d_model: int = 0,
    seq_len: int = 0,
) -> float | None:
    """Model FLOPs utilisation: (6 * N + attention FLOPs) per token x tokens/s over the peak of all devices
    (None when the peak is unknown). ``n_params`` excludes the input embedding (a lookup, no matmul);
    ``n_layer``/``d_model``/``seq_len`` add :func:`attention_flops_per_token` (0: weights only)."""
    if not peak:
        return None
    per_token = 6.0 * n_params + attention_flops_per_token(n_layer, d_model, seq_len)
    return per_token * tokens_per_s / (peak * world_size)
