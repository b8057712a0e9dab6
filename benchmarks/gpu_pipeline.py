"""benchmarks/gpu.py's ``pipeline`` figure: phiray's own pretrain path, timed as the product runs it.

``phiray.train.driver.fit_phase`` on a run dir whose ``tokenize/`` holds random packed sequences (the
tokenizer phiray trains with, Parquet shards in tokenize's layout): Ray Train's TorchTrainer, one worker,
DeepSpeed (ZeRO 2), the shared per-worker loop (``phiray/train/loop.py``), bf16 and flash-attention on a
GPU when installed (``train.precision=auto``, ``train.attn_implementation=auto``), SDPA + fp32 on CPU.
tokens/s and MFU (6N + attention FLOPs) are the loop's own figures (its history, mean of every logged
step after the first), not recomputed here.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any


def write_token_run(root: str, seq_len: int, vocab: int, rows: int, bpe_vocab: int | None) -> Any:
    """A run dir with tokenize done: tokenizer + ``tokenize/code/{train,val}`` of random sequences."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from phiray.model.tokenizer import codegen_tokenizer, train_bpe_tokenizer
    from phiray.rundir import RunDir
    from phiray.train.driver import TOKENIZER_DIR

    rd = RunDir(root)
    tok = (
        train_bpe_tokenizer((f"def f{i}(x):\n    return x + {i}\n" for i in range(200)), bpe_vocab, seq_len)
        if bpe_vocab
        else codegen_tokenizer(seq_len)
    )
    tok.save_pretrained(rd.path(TOKENIZER_DIR))
    rng = np.random.default_rng(0)
    for split, n in (("train", rows), ("val", max(2, rows // 8))):
        ids = rng.integers(0, min(vocab, len(tok)), size=(n, seq_len), dtype=np.int32)
        column = pa.array(list(ids), type=pa.list_(pa.int32()))
        rd.fs.create_dir(rd.path("tokenize", "code", split), recursive=True)
        pq.write_table(pa.table({"input_ids": column}), rd.path("tokenize", "code", split, "part-00000.parquet"))
    return rd


def pretrain_figure(model: dict | str, seq_len: int, micro_batch: int, steps: int, gpu: bool) -> dict[str, Any]:
    """Run ``steps`` pretrain steps through phiray's driver; the loop's tokens/s and MFU."""
    from phiray.config import load_config
    from phiray.model.presets import shape
    from phiray.runtime import init_ray
    from phiray.train.driver import fit_phase

    preset = model if isinstance(model, str) else "tiny"
    mc = shape(model) if isinstance(model, str) else None
    fields = {} if mc else model
    vocab = mc.vocab_size if mc else fields["vocab_size"]
    overrides = [f"model.{k}={v}" for k, v in fields.items()] + [
        f"model.n_ctx={seq_len}",
        "model.resid_pdrop=0.0",
        "train.num_workers=1",
        f"train.use_gpu={str(gpu).lower()}",
        "train.strategy=deepspeed",
        "train.tracking.tensorboard=false",
        f"pretrain.max_steps={steps}",
        "pretrain.warmup_steps=1",
        f"pretrain.micro_batch_size={micro_batch}",
        f"pretrain.global_batch_size={micro_batch}",
        "pretrain.log_every=1",
        f"pretrain.eval_every={steps}",
        "pretrain.eval_batches=1",
        f"pretrain.checkpoint_every={steps}",
        "pretrain.mixture={code: 1.0}",
    ]
    cfg = load_config(preset, overrides=overrides)
    import ray

    started = not ray.is_initialized()
    init_ray(num_gpus=1 if gpu else 0)
    try:
        with tempfile.TemporaryDirectory(prefix="phiray-gpu-pipeline-") as root:
            rd = write_token_run(root, seq_len, vocab, micro_batch * (steps + 2), bpe_vocab=None if gpu else vocab)
            start = time.perf_counter()
            info = fit_phase(cfg, rd, "pretrain")
            wall = time.perf_counter() - start
    finally:
        if started:
            ray.shutdown()
    summary = info["summary"]
    return {
        "figure": "pipeline",
        "path": "phiray.train.driver.fit_phase (Ray Train TorchTrainer + DeepSpeed ZeRO 2, 1 worker)",
        "model": preset if mc else f"{fields['n_layer']}x{fields['d_model']}",
        "batch": f"{micro_batch}x{seq_len}",
        "steps": steps,
        "precision": info.get("precision"),
        "attn": info.get("attn_implementation"),
        "tokens_per_s": round(summary["tokens_per_s"], 1),
        "mfu": None if summary.get("mfu") is None else round(summary["mfu"], 4),
        "fit_wall_s": round(wall, 1),
        "loss": summary.get("train_loss_final"),
    }
