"""Training-loader throughput: phiray.train.data alone vs what the tiny model consumes.

Writes packed shards shaped like the tokenize stage's (``--sequences`` rows of ``--seq-len`` int32 tokens
per source, row groups of 256 sequences, several files), then times (1) the loader alone drawing the
tiny preset's micro-batches for two sources (step after step, read-ahead on, as the training loop
calls it; the first pass over the data included, so the file reads are counted) and (2) the tiny
model's optimizer steps on the same micro-batch (bare PyTorch, fp32, torch's default threads). Prints
tokens/s of each and the ratio (goal >= 20).

    python benchmarks/loader.py [--sequences 20000] [--steps 2000] [--preset tiny]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_shards(root: Path, name: str, sequences: int, seq_len: int, vocab: int, files: int = 8) -> str:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = root / name / "train"
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    per_file = -(-sequences // files)
    for f in range(files):
        n = min(per_file, sequences - f * per_file)
        flat = pa.array(rng.integers(0, vocab, n * seq_len, dtype=np.int32))
        ids = pa.FixedSizeListArray.from_arrays(flat, seq_len).cast(pa.list_(pa.int32()))
        pq.write_table(pa.table({"input_ids": ids}), out / f"part-{f}.parquet", row_group_size=256)
    return str(out)


def loader_tokens_per_s(paths: dict[str, str], micro: int, steps: int, seq_len: int) -> tuple[float, int]:
    import pyarrow.fs as pafs

    from phiray.train.data import MixtureSampler, TokenSource

    fs = pafs.LocalFileSystem()
    sources = {n: TokenSource(fs, p) for n, p in paths.items()}
    sampler = MixtureSampler(sources, {n: 1.0 for n in paths}, seed=0, micro_batches=2, world=1)
    t0 = time.perf_counter()
    for step in range(steps):
        for m in range(2):
            ids, _, _ = sampler.batch(step, m, 0, micro)
    seconds = time.perf_counter() - t0
    return steps * 2 * micro * seq_len / seconds, sum(s.groups_read for s in sources.values())


def model_tokens_per_s(cfg, micro: int, steps: int = 30, warmup: int = 5) -> float:
    import torch

    from phiray.config import PhaseConfig
    from phiray.model.presets import build_model, resolve_attn_implementation
    from phiray.train.engine import TorchEngine

    mc = cfg.model
    model = build_model(mc, resolve_attn_implementation("auto", False), seed=0)
    phase = PhaseConfig(
        lr=1e-3,
        betas=(0.9, 0.98),
        eps=1e-7,
        weight_decay=0.1,
        warmup_steps=2,
        max_steps=steps + warmup,
        min_lr_ratio=0.1,
        grad_clip=1.0,
        micro_batch_size=micro,
    )
    engine = TorchEngine(model, phase, grad_accum=1, distributed=False, device=torch.device("cpu"), precision="fp32")
    ids = torch.randint(0, mc.vocab_size, (micro, cfg.tokenize.seq_len))
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        engine.micro_step(ids, ids)
        engine.optimizer_step()
    return steps * micro * cfg.tokenize.seq_len / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--sequences", type=int, default=20_000, help="sequences per source (two sources)")
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    from phiray.config import load_config

    cfg = load_config(args.preset)
    micro, seq_len = cfg.pretrain.micro_batch_size, cfg.tokenize.seq_len
    print(f"load average {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            n: write_shards(Path(tmp), n, args.sequences, seq_len, cfg.model.vocab_size) for n in ("code", "textbooks")
        }
        loader, groups = loader_tokens_per_s(paths, micro, args.steps, seq_len)
    model = model_tokens_per_s(cfg, micro)
    print(
        f"loader alone: {loader:,.0f} tokens/s ({args.steps} steps x 2 micro-batches of {micro} x {seq_len}; "
        f"{groups} row groups read)"
    )
    print(f"tiny model ({args.preset}) training: {model:,.0f} tokens/s")
    print(f"loader / model: {loader / model:.1f}x  (goal >= 20)")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
