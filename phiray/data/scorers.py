"""Quality scoring: the callable class a Ray Data actor pool maps over document batches.

Each actor builds the embedder and unpickles the forest once (in ``__init__``) and then scores batches;
embeddings are only returned when asked (``keep_embeddings``), never materialised otherwise.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from phiray.config import EmbedConfig


def load_forest_bytes(model_bytes: bytes):
    import joblib

    return joblib.load(io.BytesIO(model_bytes))


class QualityScorer:
    """``table -> table + score`` (probability of 'high quality' under the saved forest)."""

    def __init__(self, embed_cfg: dict, model_bytes: bytes, keep_embeddings: bool = False):
        from phiray.data.embed import make_embedder

        self.embedder = make_embedder(EmbedConfig.model_validate(embed_cfg))
        self.forest = load_forest_bytes(model_bytes)
        self.forest.n_jobs = 1  # one actor = one core's worth of work; parallelism comes from the pool
        self.keep_embeddings = keep_embeddings

    def scores(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        x = self.embedder.embed(texts)
        return self.forest.predict_proba(x)[:, 1].astype(np.float64), x

    def __call__(self, table: pa.Table) -> pa.Table:
        proba, x = self.scores(table["text"].to_pylist())
        table = table.append_column("score", pa.array(proba, pa.float64()))
        if self.keep_embeddings:
            table = table.append_column("embedding", pa.array(x.tolist(), pa.list_(pa.float32())))
        return table


class DocumentEmbedder:
    """``table -> (id, embedding)``: the pool embeddings active annotation chooses from (one embedder per actor)."""

    def __init__(self, embed_cfg: dict):
        from phiray.data.embed import make_embedder

        self.embedder = make_embedder(EmbedConfig.model_validate(embed_cfg))

    def __call__(self, table: pa.Table) -> pa.Table:
        x = self.embedder.embed(table["text"].to_pylist())
        return pa.table({"id": table["id"], "embedding": pa.array(x.tolist(), pa.list_(pa.float32()))})
