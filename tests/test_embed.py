"""Whole-document embeddings: chunking to the window, pooling, the token cap; MiniLM and a causal LM."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from phiray.config import EmbedConfig  # noqa: E402
from phiray.data.embed import chunk_spans, make_embedder, pool  # noqa: E402
from phiray.data.readers import stdlib_root  # noqa: E402

HEADER = (
    "# Copyright (c) Example Corp. All rights reserved.\n# Licensed under the Apache License.\nimport os\nimport sys\n"
)
TUTORIAL = (
    'def mean(values):\n    """Return the arithmetic mean of values.\n\n    >>> mean([1, 2, 3])\n    2.0\n'
    '    """\n    return sum(values) / len(values)\n\n'
) * 6
TABLE = (
    "decoding_table = (\n"
    + "".join(f"    '\\x{i:02x}'     #  0x{i:02X} -> CONTROL CHARACTER\n" for i in range(120))
    + ")\n"
)


@pytest.fixture(scope="module")
def minilm():
    return make_embedder(EmbedConfig(kind="sentence-transformers", max_length=64, max_tokens=512, batch_size=16))


def test_chunk_spans_cover_the_document_and_spread_beyond_the_cap(minilm):
    tok, text = minilm._tokenizer(), (stdlib_root() / "textwrap.py").read_text()
    every = chunk_spans(tok, text, window=62, max_tokens=None)
    assert len(every) > 20 and every[0][0] == 0 and every[-1][1] >= len(text.rstrip()) - 1
    assert all(a[1] <= b[0] for a, b in zip(every, every[1:]))  # consecutive, no overlap
    assert all(n == 62 for _, _, n in every[:-1])
    capped = chunk_spans(tok, text, window=62, max_tokens=4 * 62)
    assert len(capped) == 4 and capped[0] == every[0] and capped[-1] == every[-1]  # head, middle, tail
    assert chunk_spans(tok, "", window=62, max_tokens=100) == [(0, 0, 0)]


def test_pooling():
    v = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert np.allclose(pool(v, [3, 1], "length-weighted"), [0.75, 0.25])
    assert np.allclose(pool(v, [3, 1], "mean"), [0.5, 0.5])
    assert np.allclose(pool(v, [3, 1], "first"), [1.0, 0.0])


def test_whole_document_sees_past_the_header(minilm):
    """Two files with the same licence header: the first window cannot tell them apart, the whole can."""
    first = make_embedder(EmbedConfig(kind="sentence-transformers", max_length=32, pooling="first"))
    docs = [HEADER * 2 + TUTORIAL, HEADER * 2 + TABLE]
    head = first.embed(docs)
    assert np.allclose(head[0], head[1], atol=1e-5)
    whole = minilm.embed(docs + [TUTORIAL, TABLE])
    assert whole.shape == (4, 384) and whole.dtype == np.float32
    cos = whole @ whole.T / np.outer(np.linalg.norm(whole, axis=1), np.linalg.norm(whole, axis=1))
    assert cos[0, 2] > cos[0, 3] and cos[1, 3] > cos[1, 2]  # each is nearer its own body
    alone = minilm.embed([docs[1]])  # batching with other documents does not change a row
    assert np.allclose(alone[0], whole[1], atol=1e-4)


def _tiny_codegen(path: Path) -> Path:
    """A random-init CodeGen (phi-1's embedder family) with phi-1's tokenizer, saved for AutoModel."""
    import torch
    from transformers import CodeGenConfig, CodeGenForCausalLM

    from phiray.model.tokenizer import codegen_tokenizer

    tok = codegen_tokenizer(model_max_length=64)
    tok.save_pretrained(path)
    torch.manual_seed(0)
    config = CodeGenConfig(
        vocab_size=len(tok),
        n_positions=64,
        n_ctx=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        rotary_dim=4,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    CodeGenForCausalLM(config).save_pretrained(path)
    return path


def test_causal_lm_embedder_chunks_a_codegen_model(tmp_path):
    model_dir = _tiny_codegen(tmp_path / "codegen")
    cfg = EmbedConfig(kind="causal-lm", model=str(model_dir), max_length=32, max_tokens=128, batch_size=3, device="cpu")
    emb = make_embedder(cfg)
    assert emb.window == 32  # a causal LM adds no special tokens
    texts = [HEADER + TUTORIAL, TABLE, "x = 1"]
    x = emb.embed(texts)
    assert x.shape == (3, 32) and np.isfinite(x).all()
    assert np.allclose(emb.embed([texts[2]])[0], x[2], atol=1e-5)  # padding in a batch changes nothing
    spans = chunk_spans(emb.tokenizer, texts[0], 32, 128)
    assert len(spans) == 4  # capped at 128 tokens = 4 windows, spread
    one = make_embedder(cfg.model_copy(update={"pooling": "first"})).embed(texts[:1])
    assert not np.allclose(one[0], x[0], atol=1e-4)  # the whole document is not its first window


def test_causal_lm_needs_a_model():
    with pytest.raises(ValueError, match="embed.model is required"):
        make_embedder(EmbedConfig(kind="causal-lm"))
