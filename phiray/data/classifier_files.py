"""The classify stage's saved model (``classify/model/``): the random forest, its metadata and the labelled
sample's embeddings. Written by ``phiray.stages.classify``; read here by whoever scores with it (the filter stage,
the validation report), so no reader imports the stage."""

from __future__ import annotations

import json
import os

import numpy as np

from phiray.rundir import RunDir

MODEL_FILE, META_FILE, EMBEDDINGS_FILE = "forest.joblib", "meta.json", "embeddings.npz"


def load_embeddings(rd: RunDir, embed: dict) -> tuple[list[str], np.ndarray] | None:
    """(ids, embeddings) of the labelled sample when classify embedded it with ``embed`` (a dumped
    EmbedConfig), else None (an older classify output, or another embedder)."""
    with rd.local_dir("classify/model", upload=False) as d:
        path = os.path.join(d, EMBEDDINGS_FILE)
        with open(os.path.join(d, META_FILE)) as fh:
            same = json.load(fh).get("embed") == embed
        if not same or not os.path.exists(path):
            return None
        with np.load(path) as saved:
            return [str(i) for i in saved["ids"]], saved["x"].astype(np.float32)


def load_forest(rd: RunDir):
    """(forest, meta) saved by the classify stage."""
    import joblib

    with rd.local_dir("classify/model", upload=False) as d:
        forest = joblib.load(os.path.join(d, MODEL_FILE))
        with open(os.path.join(d, META_FILE)) as fh:
            meta = json.load(fh)
    return forest, meta
