"""classify: featurise the labelled sample and fit the quality model (a random forest, phi-1's choice, by default) on a train split.

``classify.features`` picks the inputs (the document embedding, structural features of the text, or both)
and ``classify.model`` the estimator (forest, boosting, linear), or ``annotator``: with an offline annotator
(the learned one is as cheap to run as a forest), the annotator itself is saved as the scorer (nothing is fitted; the
held-out figures are then its agreement with its own rounded labels, and its figures against people are
``benchmarks/filter_quality.py``'s).

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
from phiray.data.cuts import cutoff, precision_cutoff
from phiray.data.embed import make_embedder
from phiray.data.scorers import AnnotatorModel, QualityModel, build_model, embed_on_pool, quality_scores
from phiray.rundir import Manifest, RunDir

log = logging.getLogger("phiray")


def cut_used(cfg: RunConfig, scores: np.ndarray, labels: np.ndarray) -> tuple[float, str]:
    """The score from which filter keeps a document, as its settings choose it, applied to ``scores``:
    ``target_precision`` (on these labels), ``keep_fraction`` (a quantile of these scores) or ``threshold``."""
    fc = cfg.filter
    if fc.target_precision is not None and labels.sum():
        return precision_cutoff(scores, labels, fc.target_precision), f"target_precision={fc.target_precision}"
    if fc.keep_fraction is not None:
        return cutoff(scores, None, fc.keep_fraction), f"keep_fraction={fc.keep_fraction} of the held-out split"
    return cutoff(scores, fc.threshold, None), f"threshold={fc.threshold}"


def binary_metrics(y: np.ndarray, scores: np.ndarray, cut: float) -> dict:
    """Precision, recall, F1, accuracy at ``score >= cut`` and ROC-AUC of ``scores`` against 0/1 ``y``."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    pred = (scores >= cut).astype(np.int64)
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    return {
        "precision": round(float(precision), 4),
        "recall": round(float(recall), 4),
        "f1": round(float(f1), 4),
        "roc_auc": round(float(roc_auc_score(y, scores)), 4) if len(set(y.tolist())) == 2 else None,
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "kept_fraction": round(float(pred.mean()), 4) if len(pred) else None,
    }


def grade_metrics(grades: np.ndarray, scores: np.ndarray) -> dict:
    """A grade regressor's own figures: Spearman's rho and the mean absolute error, in grade points."""
    from scipy.stats import spearmanr

    rho = spearmanr(grades, scores).statistic if len(set(grades.tolist())) > 1 else float("nan")
    return {
        "spearman": None if rho != rho else round(float(rho), 4),
        "mae": round(float(np.abs(scores * 5 - grades).mean()), 4),
    }


def fit_and_evaluate(
    texts: list[str] | None, grades: list[int], cfg: RunConfig, x: np.ndarray | None = None
) -> tuple[bytes, dict, np.ndarray | None]:
    """Featurise (``classify.features``: the embeddings ``x``, computed unless given, and/or the texts'
    structural features), split (stratified by label, seeded), fit ``classify.model`` on the label or the
    grade (``classify.target``), evaluate on the held-out split. A grade regressor reports Spearman and MAE
    against the annotator's grades, and every target the binary figures at the cut filter will use
    (``filter.*``), not at a fixed 0.5. Returns (joblib bytes of the model, metrics, the embeddings)."""
    import joblib
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
    if x is None and cc.features != "structure" and cc.model != "annotator":
        x = make_embedder(cfg.embed).embed(texts)
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=cc.test_fraction, random_state=cfg.run.seed, stratify=y
    )
    if cc.model == "annotator":  # nothing to fit: the held-out figures say how well the scorer agrees with its labels
        model = AnnotatorModel(cfg.annotate.annotator)
        features = model.matrix(texts, x)
        proba = model.scores([texts[i] for i in idx_test], None)
    else:
        model = QualityModel(None, cc.features)
        features = model.matrix(texts, x)
        target = g if cc.target == "grade" else y
        model.estimator = build_model(cc, cfg.run.seed).fit(features[idx_train], target[idx_train])
        proba = quality_scores(model.estimator, features[idx_test])
    y_test = y[idx_test]
    cut, how = cut_used(cfg, proba, y_test)
    metrics = {
        **binary_metrics(y_test, proba, cut),
        **(grade_metrics(g[idx_test], proba) if cc.target == "grade" else {}),
        "cut": round(float(cut), 4),
        "cut_from": how,
        "n_train": int(len(idx_train)),
        "n_test": int(len(idx_test)),
        "positive_rate": round(float(y.mean()), 4),
        "n_features": int(features.shape[1]),
        # the held-out split itself (n_test numbers): filter picks a cut by precision on it and reports the
        # precision/recall any cut implies
        "heldout_scores": [round(float(p), 6) for p in proba],
        "heldout_labels": [int(v) for v in y_test],
    }
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return buf.getvalue(), metrics, x


def run(cfg: RunConfig, rd: RunDir) -> Manifest:
    """Embed annotate/labels, fit the forest on a train split, measure it on the held-out one: classify/model."""
    import ray

    sample = docio.read_docs(rd, "annotate", "labels").select_columns(["id", "text", "score"]).materialize()
    # the labelled sample is small (annotate.sample_size rows): its texts feed the structural features
    labels = sorted(sample.take_all(), key=lambda r: r["id"])
    # the split depends on the seed only, not on block order
    grades = [int(r["score"]) for r in labels]
    y = [int(s >= cfg.classify.positive_min_score) for s in grades]
    embeddings = None
    if cfg.classify.features != "structure" and cfg.classify.model != "annotator":
        by_id = embed_on_pool(sample, cfg)  # the filter's actor pool: every core embeds
        embeddings = np.asarray([by_id[r["id"]] for r in labels], np.float32)
    task = ray.remote(num_cpus=1)(fit_and_evaluate)
    model_bytes, metrics, _ = ray.get(task.remote([r["text"] for r in labels], grades, cfg, embeddings))
    rd.remove("classify", "model")
    with rd.local_dir("classify/model") as d:
        with open(os.path.join(d, MODEL_FILE), "wb") as fh:
            fh.write(model_bytes)
        # the labelled sample's embeddings: filter scores these documents without embedding them again
        if embeddings is not None:
            np.savez(os.path.join(d, EMBEDDINGS_FILE), ids=np.asarray([r["id"] for r in labels]), x=embeddings)
        meta = {
            "embed": cfg.embed.model_dump(mode="json"),
            "positive_min_score": cfg.classify.positive_min_score,
            "target": cfg.classify.target,
            "model": cfg.classify.model,
            "features": cfg.classify.features,
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
        headline={k: metrics[k] for k in ("roc_auc", "spearman", "precision", "recall", "f1", "cut") if k in metrics},
        outputs=["classify/model"],
    )
