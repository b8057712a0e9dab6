"""Packing token streams into fixed-length training sequences (plain functions + a Ray Data batch fn).

Pretraining (:func:`pack_stream`): documents are concatenated with EOS after each one and cut into
``seq_len`` pieces. Packing is per batch (stateless, so it parallelises on Ray Data); the last, partial
sequence of a batch is completed by wrapping round to the batch's first tokens: no document is dropped
and no padding token enters the loss (a few tokens are seen twice; ``wrapped`` counts them).

Finetuning (:func:`pack_examples`): each example is ``prompt + completion + EOS`` with labels ``-100`` on
the prompt; whole examples are packed greedily (an over-long one is cut to ``seq_len``), the rest of a
sequence is EOS padding with label ``-100``: loss is on completion tokens only.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import numpy as np

IGNORE = -100


def pack_stream(docs: Iterable[Sequence[int]], seq_len: int, eos_id: int) -> tuple[np.ndarray, dict[str, int]]:
    """[n, seq_len] int32 sequences from token lists (EOS appended to each document)."""
    pieces, n_docs = [], 0
    for ids in docs:
        pieces.append(np.asarray(ids, dtype=np.int32))
        pieces.append(np.asarray([eos_id], dtype=np.int32))
        n_docs += 1
    if not pieces:
        return np.zeros((0, seq_len), dtype=np.int32), {"documents": 0, "tokens": 0, "wrapped": 0}
    stream = np.concatenate(pieces)
    n_tokens = int(stream.size)
    n_seq = -(-n_tokens // seq_len)
    wrapped = n_seq * seq_len - n_tokens
    if wrapped:
        stream = np.concatenate([stream, np.resize(stream, wrapped)])  # np.resize repeats from the start
    return stream.reshape(n_seq, seq_len), {"documents": n_docs, "tokens": n_tokens, "wrapped": wrapped}


def pack_examples(
    examples: Iterable[tuple[Sequence[int], Sequence[int]]], seq_len: int, eos_id: int
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(input_ids, labels), each [n, seq_len] int32, from (prompt_ids, completion_ids) pairs."""
    rows_ids: list[np.ndarray] = []
    rows_labels: list[np.ndarray] = []
    cur_ids: list[int] = []
    cur_labels: list[int] = []
    stats = {"examples": 0, "truncated": 0, "completion_tokens": 0}

    def flush() -> None:
        pad = seq_len - len(cur_ids)
        rows_ids.append(np.asarray(cur_ids + [eos_id] * pad, dtype=np.int32))
        rows_labels.append(np.asarray(cur_labels + [IGNORE] * pad, dtype=np.int32))
        cur_ids.clear()
        cur_labels.clear()

    for prompt, completion in examples:
        ids = list(prompt) + list(completion) + [eos_id]
        labels = [IGNORE] * len(prompt) + list(completion) + [eos_id]
        if len(ids) > seq_len:
            ids, labels = ids[:seq_len], labels[:seq_len]
            stats["truncated"] += 1
        if len(cur_ids) + len(ids) > seq_len:
            flush()
        cur_ids.extend(ids)
        cur_labels.extend(labels)
        stats["examples"] += 1
        stats["completion_tokens"] += sum(1 for x in labels if x != IGNORE)
    if cur_ids:
        flush()
    if not rows_ids:
        empty = np.zeros((0, seq_len), dtype=np.int32)
        return empty, empty.copy(), stats
    return np.stack(rows_ids), np.stack(rows_labels), stats


def in_validation(doc_id: str, fraction: float, seed: int) -> bool:
    """Deterministic, seeded document-level split (the same document always lands on the same side)."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def sequences_table(input_ids: np.ndarray, labels: np.ndarray | None = None):
    """A pyarrow table with list<int32> columns (plain lists: any Parquet reader can use them)."""
    import pyarrow as pa

    def column(arr: np.ndarray):
        flat = pa.array(arr.reshape(-1), type=pa.int32())
        offsets = pa.array(np.arange(0, arr.size + 1, max(arr.shape[1], 1), dtype=np.int32)[: len(arr) + 1])
        return pa.ListArray.from_arrays(offsets, flat)

    cols = {"input_ids": column(input_ids)}
    if labels is not None:
        cols["labels"] = column(labels)
    return pa.table(cols)


_TOKENIZERS: dict[str, object] = {}


def _tokenizer(path: str):
    """Per-process cache: a Ray task worker loads the tokenizer once, not once per batch."""
    if path not in _TOKENIZERS:
        from transformers import AutoTokenizer

        _TOKENIZERS[path] = AutoTokenizer.from_pretrained(path)
    return _TOKENIZERS[path]


def _encode(tok, texts: list[str]) -> list[list[int]]:
    return (
        tok(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"] if texts else []
    )


class PackBatch:
    """Ray Data ``map_batches`` function: a pyarrow batch of documents -> packed sequences.

    ``mode="stream"`` reads ``text``; ``mode="examples"`` reads ``prompt`` and ``solution``.
    """

    def __init__(self, tokenizer_dir: str, seq_len: int, mode: str = "stream"):
        self.tokenizer_dir, self.seq_len, self.mode = tokenizer_dir, seq_len, mode

    def __call__(self, batch):
        tok = _tokenizer(self.tokenizer_dir)
        if self.mode == "examples":
            prompts = [p or "" for p in batch.column("prompt").to_pylist()]
            solutions = [s or "" for s in batch.column("solution").to_pylist()]
            pairs = zip(_encode(tok, prompts), _encode(tok, solutions))
            ids, labels, _ = pack_examples(pairs, self.seq_len, tok.eos_token_id)
            return sequences_table(ids, labels)
        texts = [t for t in batch.column("text").to_pylist() if t]
        ids, _ = pack_stream(_encode(tok, texts), self.seq_len, tok.eos_token_id)
        return sequences_table(ids)
