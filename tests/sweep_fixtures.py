"""A run directory with tokenize's outputs for 3 sources, in exactly its schema, without running tokenize.

``tokenize/<source>/{train,val}/*.parquet`` hold fixed-length int32 ``input_ids`` lists; each source draws
its tokens from its own id range with its own (Zipf-like) distribution, so the mixture matters and a batch
shows which source it came from. ``tokenize/tokenizer/`` is a small byte-level BPE in HF format;
``synthesize/validation/`` a few validation exercises (for the proxy pass@1) and ``synthesize/heldout/`` a
test split the sweep must never read.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from phiray.config import load_config
from phiray.data.packing import sequences_table
from phiray.rundir import Manifest, RunDir

SEQ_LEN = 64
# source -> (first id, last id + 1, Zipf exponent): disjoint ranges above the byte alphabet's first ids.
SOURCES = {"code": (10, 90, 1.1), "textbooks": (90, 170, 1.6), "exercises": (170, 250, 2.2)}


def source_of(token: int) -> str | None:
    return next((name for name, (lo, hi, _) in SOURCES.items() if lo <= token < hi), None)


def _sequences(lo: int, hi: int, exponent: float, rows: int, rng: np.random.Generator) -> np.ndarray:
    ranks = np.arange(1, hi - lo + 1, dtype=np.float64)
    probs = ranks**-exponent
    return (lo + rng.choice(hi - lo, size=(rows, SEQ_LEN), p=probs / probs.sum())).astype(np.int32)


def _write(rd: RunDir, rel: str, table: pa.Table) -> None:
    rd.makedirs(rel)
    with rd.fs.open_output_stream(rd.path(rel, "part-000.parquet")) as out:
        pq.write_table(table, out)


def _tokenizer(rd: RunDir) -> None:
    from phiray.model.tokenizer import train_bpe_tokenizer

    texts = ["def add(a, b):\n    return a + b\n", "A function returns a value.\n"] * 50
    tok = train_bpe_tokenizer(texts, vocab_size=300, model_max_length=SEQ_LEN)
    with rd.local_dir("tokenize/tokenizer") as local:
        tok.save_pretrained(local)


def _exercises(n: int, prefix: str = "double") -> list[dict]:
    rows = []
    for i in range(n):
        name = f"{prefix}_{i}"
        prompt = f'def {name}(x):\n    """Return twice x."""\n'
        rows.append(
            {
                "id": hashlib.sha256(prompt.encode()).hexdigest(),
                "kind": "exercise",
                "prompt": prompt,
                "solution": "    return 2 * x\n",
                "tests": f"assert {name}({i}) == {2 * i}",
                "entry_point": name,
                "text": prompt + "    return 2 * x\n",
                "verified": True,
            }
        )
    return rows


def make_packed_run(location, train_rows: int = 96, val_rows: int = 16, heldout: int = 3, seed: int = 0) -> RunDir:
    """tokenize outputs (+ its manifest), synthesize/validation and a synthesize/heldout test split."""
    rd = RunDir(location)
    rng = np.random.default_rng(seed)
    for name, (lo, hi, exponent) in SOURCES.items():
        _write(rd, f"tokenize/{name}/train", sequences_table(_sequences(lo, hi, exponent, train_rows, rng)))
        _write(rd, f"tokenize/{name}/val", sequences_table(_sequences(lo, hi, exponent, val_rows, rng)))
    _tokenizer(rd)
    if heldout:
        _write(rd, "synthesize/validation", pa.Table.from_pylist(_exercises(heldout)))
        _write(rd, "synthesize/heldout", pa.Table.from_pylist(_exercises(heldout, prefix="test_only")))
    rd.finish(Manifest(stage="tokenize"), config_hash="fixture", inputs={}, started_at="", wall_time_s=0.0)
    return rd


SWEEP_OVERRIDES = [
    "model.vocab_size=512",
    "model.n_ctx=64",
    "model.n_layer=1",
    "model.d_model=32",
    "model.n_head=2",
    "model.rotary_dim=8",  # heads of 16 here (the tiny preset has heads of 64, rotary 32)
    "pretrain.global_batch_size=8",
    "pretrain.micro_batch_size=8",
    "pretrain.warmup_steps=2",
    "pretrain.lr=1e-2",
    "sweep.sources=[code,textbooks,exercises]",
    "sweep.eval_batches=1",
    "sweep.max_new_tokens=8",
    "sweep.validation_limit=2",
    "sweep.cpus_per_trial=1",
    "sweep.max_concurrent=2",
]


def sweep_config(*overrides: str):
    """The tiny preset, shrunk to the fixture's shapes; ``overrides`` last."""
    return load_config("tiny", overrides=[*SWEEP_OVERRIDES, *overrides])
