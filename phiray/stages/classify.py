"""classify: embed the labelled sample and fit a random forest (phi-1's choice) on a train split.

``classify.target=label`` fits a classifier of 'high quality' (score >= positive_min_score); ``grade`` a
regressor of the annotator's 0-5 score, whose predictions (/ 5) rank the kept documents by how good they
are rather than by how sure a classifier is that they pass (its probabilities saturate near 1 for every
clear pass, plumbing and textbook alike).

Precision, recall, F1 and ROC-AUC on the held-out split go to the manifest (and ``phiray status``). The
sample is embedded by the filter's actor pool (``filter.actors``, GPUs by ``filter.num_gpus_per_actor``)
and the forest fitted in a Ray task. The model is saved with joblib in ``classify/model/`` beside
``meta.json`` (embedder config, label rule) and the sample's embeddings (``embeddings.npz``), which filter
reuses instead of embedding those documents again.
"""

from __future__ import annotations

import io
import json
import logging
import os

import numpy as np

from phiray.config import RunConfig
from phiray.data import docio
from phiray.data.classifier_files import EMBEDDINGS_FILE, META_FILE, MODEL_FILE
from phiray.data.embed import make_embedder
from phiray.data.scorers import build_forest, embed_on_pool, quality_scores
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")


def fit_and_evaluate(
    texts: list[str] | None, grades: list[int], cfg: RunConfig, x: np.ndarray | None = None
) -> tuple[bytes, dict, np.ndarray]:
    """Embed (unless the embeddings ``x`` are given), split (stratified by label, seeded), fit on the label
    or the grade (``classify.target``), evaluate against the label. Returns (joblib bytes of the forest,
    metrics, the embeddings)."""
    import joblib
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score
    from sklearn.model_selection import train_test_split

    cc = cfg.classify
    g = np.asarray(grades, dtype=np.int64)
    y = (g >= cc.positive_min_score).astype(np.int64)
    counts = np.bincount(y, minlength=2)
    if counts.min() < 2:
        raise ValueError(
            f"classify: the labels have {counts[0]} negatives and {counts[1]} positives; need >= 2 of each "
            f"(adjust classify.positive_min_score={cfg.classify.positive_min_score} or annotate.sample_size)"
        )
    if x is None:
        x = make_embedder(cfg.embed).embed(texts)
    x_train, x_test, y_train, y_test, g_train, _ = train_test_split(
        x, y, g, test_size=cc.test_fraction, random_state=cfg.run.seed, stratify=y
    )
    forest = build_forest(cc, cfg.run.seed).fit(x_train, g_train if cc.target == "grade" else y_train)
    proba = quality_scores(forest, x_test)
    # a grade forest passes a document at a predicted grade half a point below positive_min_score
    pred = (proba >= (0.5 if cc.target == "label" else (cc.positive_min_score - 0.5) / 5)).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(y_test, pred, average="binary", zero_division=0)
    metrics = {
        "precision": round(float(precision), 4),
        "recall": round(float(recall), 4),
        "f1": round(float(f1), 4),
        "roc_auc": round(float(roc_auc_score(y_test, proba)), 4) if len(set(y_test)) == 2 else None,
        "accuracy": round(float(accuracy_score(y_test, pred)), 4),
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "positive_rate": round(float(y.mean()), 4),
        "embedding_dim": int(x.shape[1]),
        # the held-out split itself (n_test numbers): filter picks a cut by precision on it and reports the
        # precision/recall any cut implies
        "heldout_scores": [round(float(p), 6) for p in proba],
        "heldout_labels": [int(v) for v in y_test],
    }
    buf = io.BytesIO()
    joblib.dump(forest, buf)
    return buf.getvalue(), metrics, x


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Embed annotate/labels, fit the forest on a train split, measure it on the held-out one: classify/model."""
    import ray

    sample = docio.read_docs(rd, "annotate", "labels").select_columns(["id", "text", "score"]).materialize()
    labels = sorted(sample.select_columns(["id", "score"]).take_all(), key=lambda r: r["id"])
    # the split depends on the seed only, not on block order
    grades = [int(r["score"]) for r in labels]
    y = [int(s >= cfg.classify.positive_min_score) for s in grades]
    by_id = embed_on_pool(sample, cfg)  # the filter's actor pool: every core embeds
    embeddings = np.asarray([by_id[r["id"]] for r in labels], np.float32)
    task = ray.remote(num_cpus=1)(fit_and_evaluate)
    model_bytes, metrics, _ = ray.get(task.remote(None, grades, cfg, embeddings))
    rd.remove("classify", "model")
    with rd.local_dir("classify/model") as d:
        with open(os.path.join(d, MODEL_FILE), "wb") as fh:
            fh.write(model_bytes)
        # the labelled sample's embeddings: filter scores these documents without embedding them again
        np.savez(os.path.join(d, EMBEDDINGS_FILE), ids=np.asarray([r["id"] for r in labels]), x=embeddings)
        meta = {
            "embed": cfg.embed.model_dump(mode="json"),
            "positive_min_score": cfg.classify.positive_min_score,
            "target": cfg.classify.target,
            "metrics": metrics,
            "classes": [0, 1],
        }
        with open(os.path.join(d, META_FILE), "w") as fh:
            json.dump(meta, fh, indent=2)
    metrics = {k: v for k, v in metrics.items() if not k.startswith("heldout_")}  # those live in meta.json
    log.info("classify: held-out %s", metrics)
    return Manifest(
        stage="classify",
        rows={
            "labelled": len(labels),
            "train": metrics["n_train"],
            "test": metrics["n_test"],
            "positives": int(sum(y)),
        },
        metrics={
            "heldout": metrics,
            "embed": cfg.embed.model_dump(mode="json"),
            "forest": cfg.classify.model_dump(mode="json"),
        },
        headline={k: metrics[k] for k in ("precision", "recall", "f1", "roc_auc")},
        outputs=["classify/model"],
    )
