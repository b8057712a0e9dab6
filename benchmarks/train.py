"""Training throughput: phiray's Ray Train + DeepSpeed path (1 worker) vs a bare PyTorch loop.

Same model, batch, optimizer and thread count; both time steady-state optimizer steps after warm-up
(the one-off `trainer.fit` start-up is reported separately). Prints tokens/s of each and the ratio
(goal >= 0.9). On a GPU it also prints MFU ((6 * N + attention FLOPs) * tokens/s over the device's bf16
peak), with bf16 and flash-attention when installed:

    python benchmarks/train.py                                  # CPU: tiny-ish model, ratio
    python benchmarks/train.py --shape phi-1-small --seq-len 2048 --micro-batch 8   # GPU: + MFU
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from phiray.runtime import prepare_environment


def _model_cfg(args):
    from phiray.config import ModelConfig
    from phiray.model.presets import shape

    if args.shape:
        return shape(args.shape).model_copy(update={"resid_pdrop": 0.0})
    return ModelConfig(
        n_layer=args.layers,
        d_model=args.d_model,
        n_head=args.d_model // 64,
        rotary_dim=32,
        n_ctx=args.seq_len,
        vocab_size=args.vocab,
        resid_pdrop=0.0,
    )


def _phase(args):
    from phiray.config import PhaseConfig

    return PhaseConfig(
        lr=1e-3,
        betas=(0.9, 0.98),
        eps=1e-7,
        weight_decay=0.1,
        warmup_steps=2,
        max_steps=args.warmup + args.steps,
        min_lr_ratio=0.1,
        grad_clip=1.0,
        micro_batch_size=args.micro_batch,
    )


def _time_steps(engine, args, device) -> float:
    """Seconds for ``args.steps`` optimizer steps after ``args.warmup`` untimed ones (same random batch)."""
    import torch

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, args.vocab, (args.micro_batch, args.seq_len), generator=g).to(device)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        engine.micro_step(ids, ids)
        engine.optimizer_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _build(args, device):
    import torch

    from phiray.model.presets import build_model, resolve_attn_implementation

    attn = resolve_attn_implementation("auto", device.type == "cuda")
    model = build_model(_model_cfg(args), attn, seed=0)
    precision = "bf16" if device.type == "cuda" else "fp32"
    torch.set_num_threads(args.threads)
    return model, precision, attn


def bare_pytorch(args) -> dict:
    import torch

    from phiray.model.presets import count_params
    from phiray.train.engine import TorchEngine

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, precision, attn = _build(args, device)
    engine = TorchEngine(model, _phase(args), grad_accum=1, distributed=False, device=device, precision=precision)
    seconds = _time_steps(engine, args, device)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    return {
        "tokens_per_s": args.steps * args.micro_batch * args.seq_len / seconds,
        "attn": attn,
        "precision": precision,
        "n_params": count_params(model, non_embedding=True),
        "device": device_name,
    }


def _worker(config: dict) -> None:
    import deepspeed
    import ray.train
    import torch

    from phiray.train.engine import DeepSpeedEngine

    args = argparse.Namespace(**config)
    deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    model, precision, _ = _build(args, device)
    engine = DeepSpeedEngine(
        model, _phase(args), grad_accum=1, world_size=1, zero_stage=args.zero_stage, precision=precision
    )
    seconds = _time_steps(engine, args, engine.device)
    metrics = {"tokens_per_s": args.steps * args.micro_batch * args.seq_len / seconds}
    # Train V2 keeps the metrics of checkpointed reports in the Result: attach a one-file checkpoint.
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "metrics.json"), "w") as f:
            json.dump(metrics, f)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def ray_deepspeed(args) -> dict:
    import torch
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpu = torch.cuda.is_available()
    trainer = TorchTrainer(
        _worker,
        train_loop_config=vars(args),
        scaling_config=ScalingConfig(num_workers=1, use_gpu=gpu, resources_per_worker={"CPU": args.threads}),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=RunConfig(
            name=f"bench-train-{int(time.time())}",
            storage_path=os.path.join(tempfile.gettempdir(), "phiray-bench-train"),
        ),
    )
    start = time.perf_counter()
    result = trainer.fit()
    with result.checkpoint.as_directory() as directory, open(os.path.join(directory, "metrics.json")) as f:
        metrics = json.load(f)
    return {"tokens_per_s": metrics["tokens_per_s"], "fit_wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shape", default=None, help="named shape (phi-1-small, phi-1, ...) instead of the small model"
    )
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (and CPUs of the Ray worker)")
    parser.add_argument("--zero-stage", type=int, default=2)
    parser.add_argument("--peak-flops", type=float, default=None, help="device peak FLOP/s for MFU")
    args = parser.parse_args()
    if args.shape:
        args.vocab = _model_cfg(args).vocab_size
    prepare_environment(local=True)
    import ray

    from phiray.train.schedule import mfu, peak_flops

    ray.init(num_cpus=max(2, args.threads), include_dashboard=False, log_to_driver=False)
    bare = bare_pytorch(args)
    rayds = ray_deepspeed(args)
    ray.shutdown()
    peak = peak_flops(args.peak_flops, bare["device"] if bare["device"] != "cpu" else None)
    mc = _model_cfg(args)
    attention = {"n_layer": mc.n_layer, "d_model": mc.d_model, "seq_len": args.seq_len}
    out = {
        "model": args.shape or f"{args.layers}x{args.d_model}",
        "n_params_non_embedding": bare["n_params"],
        "batch": f"{args.micro_batch}x{args.seq_len}",
        "device": bare["device"],
        "precision": bare["precision"],
        "attn": bare["attn"],
        "zero_stage": args.zero_stage,
        "threads": args.threads,
        "bare_tokens_per_s": round(bare["tokens_per_s"], 1),
        "ray_deepspeed_tokens_per_s": round(rayds["tokens_per_s"], 1),
        "ratio": round(rayds["tokens_per_s"] / bare["tokens_per_s"], 3),
        "ray_fit_wall_s": round(rayds["fit_wall_s"], 1),
        "mfu_bare": mfu(bare["n_params"], bare["tokens_per_s"], peak, 1, **attention),
        "mfu_ray_deepspeed": mfu(bare["n_params"], rayds["tokens_per_s"], peak, 1, **attention),
    }
    print(json.dumps(out, indent=2))
    print(f"ratio (Ray Train + DeepSpeed / bare PyTorch tokens/s): {out['ratio']:.3f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
