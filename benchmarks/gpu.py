"""The GPU path in one prepared check: phi-1 training MFU, growth, the embedder and generation on CUDA.

No GPU code path of phiray runs on CPU-only CI, so this script is the one place they are measured. It
uses phiray's own model code (``phiray.model``: PhiConfig from the presets, the growth operator) with
random initialisation (no weights can be fetched) and prints one JSON line per figure, then a summary
against the anchors. Figures:

- ``train``: phi-1 (1.3B, 24 x 2048, 32 heads of 64, rotary 32) at seq 2048, bf16 autocast + fused AdamW:
  steady-state tokens/s and MFU (6N + attention FLOPs, ``phiray.train.schedule.mfu``) for each SDPA
  backend (flash / efficient / math) with ``torch.compile`` off, and the best backends with it on;
- ``pipeline``: the same shape through phiray's own pretrain path (``phiray.train.driver.fit_phase``: Ray
  Train TorchTrainer + DeepSpeed, the shared loop, bf16 + flash-attention when installed; see
  ``benchmarks/gpu_pipeline.py``), its tokens/s and MFU from the loop's own history, and the ratio to the
  best bare ``train`` figure without compile (the product vs a toy loop on the same model and batch);
- ``growth``: phi-1-small (350M) -> phi-1 by weight reuse on the GPU: time, peak memory, and step-0 loss
  of the grown model vs the small one (trained a few steps first, so the comparison means something)
  and vs a fresh initialisation;
- ``embed``: a CodeGen-350M-shaped model's mean-pooled hidden states (the phi-1 filter's embedder), tokens/s;
- ``generate``: greedy decoding tokens/s at batch 1 and 64.

Usage (the device check; about 6-8 minutes on one H200):

    python benchmarks/gpu.py                     # CUDA when present, else the CPU mode below
    python benchmarks/gpu.py --cpu               # tiny shapes; the default test tier runs it --no-pipeline
                                                 # (seconds), the slow tier with the Ray Train figure (~1-2 min)
    python benchmarks/gpu.py --budget-s 420      # stop starting new figures after this many seconds

On a machine without phiray's dependencies only ``pydantic`` and ``pyyaml`` are needed beside torch and
transformers (``phiray.config`` validates the shapes). Anchors: llm-foundry's MPT-1.3B at 41.8% MFU (bf16,
H100) and 59.9% (A100); phiray's goal is >= 40% (stretch 50%).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

ANCHORS = {"llm-foundry MPT-1.3B bf16 H100": 0.418, "llm-foundry MPT-1.3B bf16 A100": 0.599}
MFU_GOAL, MFU_STRETCH = 0.40, 0.50
BACKENDS = ("flash", "efficient", "math")


@dataclass(frozen=True)
class Plan:
    """Shapes and step counts of one mode (GPU: the paper's shapes; CPU: tiny, seconds)."""

    device: str
    model: str | dict  # a preset shape name, or ModelConfig fields
    small: str | dict  # the growth source
    seq_len: int
    micro_batch: int
    warmup: int
    steps: int
    small_train_steps: int
    embed_shape: dict
    embed_batch: int
    embed_seq: int
    gen_batches: tuple[int, ...]
    gen_prompt: int
    gen_new: int
    compile_backends: tuple[str, ...]
    backends: tuple[str, ...] = BACKENDS


GPU_PLAN = Plan(
    device="cuda",
    model="phi-1",
    small="phi-1-small",
    seq_len=2048,
    micro_batch=8,
    warmup=3,
    steps=10,
    small_train_steps=30,
    embed_shape=dict(n_layer=20, n_embd=1024, n_head=16, rotary_dim=32, n_positions=2048, vocab_size=51200),
    embed_batch=32,
    embed_seq=1024,
    gen_batches=(1, 64),
    gen_prompt=128,
    gen_new=128,
    compile_backends=("flash", "efficient"),
)
TINY = dict(n_layer=2, d_model=128, n_head=2, rotary_dim=32, n_ctx=128, vocab_size=512, resid_pdrop=0.0)
# CodeGen's attention splits its heads over 4 "mp" groups: n_head must be a multiple of 4.
CPU_PLAN = Plan(
    device="cpu",
    model=TINY,
    small=dict(TINY, n_layer=1, d_model=64, n_head=1),
    seq_len=64,
    micro_batch=2,
    warmup=1,
    steps=2,
    small_train_steps=5,
    embed_shape=dict(
        n_layer=2, n_embd=256, n_head=4, rotary_dim=32, n_positions=128, vocab_size=512, bos_token_id=0, eos_token_id=0
    ),
    embed_batch=4,
    embed_seq=64,
    gen_batches=(1, 4),
    gen_prompt=8,
    gen_new=8,
    compile_backends=(),
    backends=("flash", "math"),
)  # the memory-efficient SDPA kernel exists on CUDA only


def emit(record: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(record, sort_keys=True), flush=True)
    return record


def model_config(spec: str | dict, seq_len: int):
    from phiray.config import ModelConfig
    from phiray.model.presets import shape

    mc = shape(spec) if isinstance(spec, str) else ModelConfig(**spec)
    return mc.model_copy(
        update={"n_ctx": max(mc.n_ctx, seq_len), "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    )


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def reset_memory(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def autocast(device: str):
    import torch

    # bf16 autocast over fp32 master weights: the mixed precision llm-foundry's anchor figures use.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def sdpa_backend(name: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(
        {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[
            name
        ]
    )


def random_batch(vocab: int, batch: int, seq: int, device: str, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=g).to(device)


def train_step_fn(model, optimizer, ids, device: str) -> Callable[[], Any]:
    def step() -> float:
        with autocast(device):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def bench_train(plan: Plan, backend: str, compiled: bool) -> dict[str, Any]:
    """Steady-state training tokens/s and MFU of one (SDPA backend, compile) setting."""
    import torch

    from phiray.model.presets import build_model, count_params
    from phiray.train.schedule import mfu, peak_flops

    mc = model_config(plan.model, plan.seq_len)
    # The math backend materialises the (seq x seq) scores of every head and layer for the backward pass:
    # at phi-1's shape that is ~5 GB a layer per 8 sequences, so it runs at a quarter of the batch.
    batch = max(1, plan.micro_batch // 4) if backend == "math" and plan.device == "cuda" else plan.micro_batch
    reset_memory(plan.device)
    model = build_model(mc, "sdpa", seed=0).to(plan.device).train()
    n_params = count_params(model, non_embedding=True)
    fused = {"fused": True} if plan.device == "cuda" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-7, weight_decay=0.1, **fused)
    forward = torch.compile(model) if compiled else model
    ids = random_batch(mc.vocab_size, batch, plan.seq_len, plan.device)
    step = train_step_fn(forward, optimizer, ids, plan.device)
    with sdpa_backend(backend):
        start = time.perf_counter()
        for _ in range(plan.warmup):
            loss = step()
        sync(plan.device)
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(plan.steps):
            loss = step()
        sync(plan.device)
        elapsed = time.perf_counter() - start
    tokens_per_s = batch * plan.seq_len * plan.steps / elapsed
    device_name = torch.cuda.get_device_name() if plan.device == "cuda" else None
    peak = peak_flops(None, device_name)
    utilisation = mfu(n_params, tokens_per_s, peak, 1, n_layer=mc.n_layer, d_model=mc.d_model, seq_len=plan.seq_len)
    record = {
        "figure": "train",
        "backend": backend,
        "compile": compiled,
        "model": _name(plan.model),
        "n_params_non_embedding": n_params,
        "batch": f"{batch}x{plan.seq_len}",
        "device": device_name or "cpu",
        "tokens_per_s": round(tokens_per_s, 1),
        "step_s": round(elapsed / plan.steps, 4),
        "startup_s": round(startup_s, 2),
        "loss": round(float(loss), 4),
        "peak_mem_gib": peak_memory_gib(plan.device),
        "mfu": None if utilisation is None else round(utilisation, 4),
    }
    del model, optimizer, forward
    return record


def _name(spec: str | dict) -> str:
    return spec if isinstance(spec, str) else f"{spec['n_layer']}x{spec['d_model']}"


def _eval_loss(model, ids, device: str) -> float:
    import torch

    with torch.no_grad(), autocast(device):
        return float(model(input_ids=ids, labels=ids).loss)


def bench_growth(plan: Plan) -> dict[str, Any]:
    """phi-1-small -> phi-1 on the device; step-0 loss of the grown model vs the small one and a fresh init."""
    import torch

    from phiray.model.growth import grow_model
    from phiray.model.presets import build_model

    small_cfg, big_cfg = model_config(plan.small, plan.seq_len), model_config(plan.model, plan.seq_len)
    reset_memory(plan.device)
    small = build_model(small_cfg, "sdpa", seed=0).to(plan.device)
    # A few steps on one fixed batch take the small model's loss well below ln(vocab), so "the grown model
    # starts where the small one is" is a real statement, not two random models both at ln(vocab).
    ids = random_batch(small_cfg.vocab_size, plan.micro_batch, plan.seq_len, plan.device, seed=1)
    optimizer = torch.optim.AdamW(small.parameters(), lr=1e-3)
    step = train_step_fn(small, optimizer, ids, plan.device)
    for _ in range(plan.small_train_steps):
        step()
    del optimizer
    small.eval()
    sync(plan.device)
    start = time.perf_counter()
    with torch.device(plan.device):  # the big model is built and filled on the device, not on the host
        grown = grow_model(small, big_cfg)
    sync(plan.device)
    grow_s = time.perf_counter() - start
    grown.eval()
    losses = {"small": _eval_loss(small, ids, plan.device), "grown": _eval_loss(grown, ids, plan.device)}
    del grown
    with torch.device(plan.device):
        fresh = build_model(big_cfg, "sdpa", seed=2).eval()
    losses["fresh"] = _eval_loss(fresh, ids, plan.device)
    # Width growth is function-preserving, the depth map is not: the grown model should sit far closer to
    # the small model's loss than to a fresh model's ln(vocab).
    gap = abs(losses["grown"] - losses["small"]) / max(1e-6, abs(losses["fresh"] - losses["small"]))
    return {
        "figure": "growth",
        "small": _name(plan.small),
        "target": _name(plan.model),
        "grow_s": round(grow_s, 2),
        "peak_mem_gib": peak_memory_gib(plan.device),
        "step0_loss": {k: round(v, 4) for k, v in losses.items()},
        "ln_vocab": round(math.log(big_cfg.vocab_size), 4),
        "relative_gap": round(gap, 4),
        "ok": gap < 0.25,
    }


def bench_embed(plan: Plan) -> dict[str, Any]:
    """Mean-pooled last hidden states of a CodeGen-shaped model (phi-1's filter embedder), tokens/s."""
    import torch
    from transformers import CodeGenConfig, CodeGenModel

    reset_memory(plan.device)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if plan.device == "cuda" else torch.float32
    model = CodeGenModel(CodeGenConfig(**plan.embed_shape)).to(plan.device, dtype).eval()
    ids = random_batch(plan.embed_shape["vocab_size"], plan.embed_batch, plan.embed_seq, plan.device)
    mask = torch.ones_like(ids)

    def embed() -> Any:
        with torch.inference_mode():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(1) / weights.sum(1)

    embed()
    sync(plan.device)
    repeats = 3
    start = time.perf_counter()
    for _ in range(repeats):
        pooled = embed()
    sync(plan.device)
    elapsed = time.perf_counter() - start
    return {
        "figure": "embed",
        "shape": "codegen-350M" if plan.device == "cuda" else "codegen-tiny",
        "batch": f"{plan.embed_batch}x{plan.embed_seq}",
        "dim": int(pooled.shape[-1]),
        "tokens_per_s": round(repeats * plan.embed_batch * plan.embed_seq / elapsed, 1),
        "peak_mem_gib": peak_memory_gib(plan.device),
    }


def bench_generate(plan: Plan, batch: int) -> dict[str, Any]:
    """Greedy decoding with the KV cache (transformers' generate on phiray's PhiForCausalLM), tokens/s."""
    import torch

    from phiray.model.presets import build_model

    mc = model_config(plan.model, plan.seq_len)
    reset_memory(plan.device)
    dtype = torch.bfloat16 if plan.device == "cuda" else torch.float32
    model = build_model(mc, "sdpa", seed=0).to(plan.device, dtype).eval()
    ids = random_batch(mc.vocab_size, batch, plan.gen_prompt, plan.device)
    kwargs = dict(
        do_sample=False,
        max_new_tokens=plan.gen_new,
        min_new_tokens=plan.gen_new,
        pad_token_id=0,
        attention_mask=torch.ones_like(ids),
    )
    with torch.inference_mode():
        model.generate(ids, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up
        sync(plan.device)
        start = time.perf_counter()
        out = model.generate(ids, **kwargs)
        sync(plan.device)
    elapsed = time.perf_counter() - start
    new_tokens = (out.shape[1] - ids.shape[1]) * batch
    return {
        "figure": "generate",
        "model": _name(plan.model),
        "batch": batch,
        "prompt_tokens": plan.gen_prompt,
        "new_tokens_per_row": out.shape[1] - ids.shape[1],
        "tokens_per_s": round(new_tokens / elapsed, 1),
        "peak_mem_gib": peak_memory_gib(plan.device),
    }


def run_plan(plan: Plan, budget_s: float, compile_on: bool, pipeline: bool = True) -> list[dict[str, Any]]:
    """Every figure of the plan, each guarded: a failing figure prints an error line, the rest still run."""
    jobs: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (f"train/{b}/eager", lambda b=b: bench_train(plan, b, False)) for b in plan.backends
    ]
    if compile_on:
        jobs += [(f"train/{b}/compile", lambda b=b: bench_train(plan, b, True)) for b in plan.compile_backends]
    jobs += [("pipeline", lambda: bench_pipeline(plan, records))] if pipeline else []
    jobs += [("growth", lambda: bench_growth(plan)), ("embed", lambda: bench_embed(plan))]
    jobs += [(f"generate/{n}", lambda n=n: bench_generate(plan, n)) for n in plan.gen_batches]
    start, records = time.perf_counter(), []
    for name, job in jobs:
        if time.perf_counter() - start > budget_s:
            records.append(emit({"figure": name, "skipped": f"time budget of {budget_s:.0f} s spent"}))
            continue
        try:
            records.append(emit(job()))
        except Exception as exc:  # noqa: BLE001 - one broken backend must not hide the other figures
            records.append(emit({"figure": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}))
    return records


def bench_pipeline(plan: Plan, records: list[dict[str, Any]]) -> dict[str, Any]:
    """phiray's own pretrain step path on the plan's model and batch, beside the bare loop's best eager figure."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_pipeline import pretrain_figure

    record = pretrain_figure(
        plan.model, plan.seq_len, plan.micro_batch, plan.warmup + plan.steps, gpu=plan.device == "cuda"
    )
    bare = [r for r in records if r.get("figure") == "train" and not r.get("compile") and r.get("tokens_per_s")]
    bare = [r for r in bare if r["batch"] == record["batch"]]  # the math backend may run a smaller batch
    best = max(bare, key=lambda r: r["tokens_per_s"], default=None)
    record["bare_backend"] = best and best["backend"]
    record["ratio_to_bare"] = round(record["tokens_per_s"] / best["tokens_per_s"], 3) if best else None
    return record


def summary(records: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    train = [r for r in records if r.get("figure") == "train" and r.get("tokens_per_s")]
    best = max(train, key=lambda r: r["tokens_per_s"], default=None)
    best_mfu = best.get("mfu") if best else None
    verdict = (
        "no MFU: the device's peak FLOP/s is unknown (CPU, or a device not in PEAK_FLOPS)"
        if best_mfu is None
        else "meets the goal"
        if best_mfu >= MFU_GOAL
        else "below the goal"
    )
    growth = next((r for r in records if r.get("figure") == "growth" and "ok" in r), None)
    pipeline = next((r for r in records if r.get("figure") == "pipeline" and "tokens_per_s" in r), None)
    return {
        "pipeline": pipeline and {k: pipeline[k] for k in ("tokens_per_s", "mfu", "ratio_to_bare", "attn")},
        "summary": True,
        "mode": plan.device,
        "best_train": best and {k: best[k] for k in ("backend", "compile", "tokens_per_s", "mfu")},
        "mfu_goal": MFU_GOAL,
        "mfu_stretch": MFU_STRETCH,
        "anchors_mfu": ANCHORS,
        "verdict": verdict,
        "growth_ok": growth["ok"] if growth else None,
        "errors": [r["figure"] for r in records if "error" in r],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU (seconds), even with a GPU")
    parser.add_argument("--budget-s", type=float, default=420.0, help="start no new figure after this many seconds")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile figures")
    parser.add_argument("--no-pipeline", action="store_true", help="skip phiray's own Ray Train + DeepSpeed figure")
    args = parser.parse_args(argv)
    import torch

    plan = CPU_PLAN if args.cpu or not torch.cuda.is_available() else GPU_PLAN
    if plan.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    emit(
        {
            "figure": "environment",
            "mode": plan.device,
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if plan.device == "cuda" else "cpu",
        }
    )
    records = run_plan(plan, args.budget_s, compile_on=not args.no_compile, pipeline=not args.no_pipeline)
    result = emit(summary(records, plan))
    return 1 if result["errors"] and plan.device == "cpu" else 0  # on CPU every figure must run


if __name__ == "__main__":
    raise SystemExit(main())
