"""The filter's cut maths: the score from which a document is kept (threshold, keep fraction or target
precision) and the precision/recall it implies on labelled scores. Plain numpy: classify reports its
metrics at the cut filter will use, and filter applies it."""

from __future__ import annotations

import numpy as np


def cutoff(scores: np.ndarray, threshold: float | None, keep_fraction: float | None) -> float:
    """Score from which a document is kept: the threshold, or the quantile keeping ``keep_fraction``."""
    if keep_fraction is not None:
        if len(scores) == 0:
            return 1.0
        k = max(1, int(round(keep_fraction * len(scores))))
        return float(np.sort(scores)[::-1][k - 1])
    if threshold is None:
        raise ValueError("filter: set filter.threshold, filter.keep_fraction or filter.target_precision")
    return float(threshold)


def precision_cutoff(proba: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest held-out score from which precision is >= ``target`` (most recall at that precision);
    when no cut reaches it, the cut of best precision (reported as such: see :func:`implied`)."""
    if len(proba) == 0 or labels.sum() == 0:
        raise ValueError("filter.target_precision: classify's held-out split has no positives to measure precision on")
    order = np.argsort(-proba, kind="stable")
    s, y = proba[order], labels[order]
    precision = np.cumsum(y) / np.arange(1, len(y) + 1)
    last = np.r_[s[1:] != s[:-1], True]  # a cut keeps every tie: evaluate at the end of each run of ties
    ok = np.flatnonzero(last & (precision >= target))
    return float(s[ok[-1]]) if len(ok) else float(s[np.flatnonzero(last)[np.argmax(precision[last])]])


def implied(proba: np.ndarray, labels: np.ndarray, cut: float) -> dict:
    """Precision and recall on classify's held-out split at ``score >= cut``."""
    kept = proba >= cut
    tp = int((kept & (labels == 1)).sum())
    return {
        "precision": round(tp / int(kept.sum()), 4) if kept.any() else None,
        "recall": round(tp / int(labels.sum()), 4) if labels.any() else None,
        "kept_fraction": round(float(kept.mean()), 4) if len(kept) else None,
        "n": int(len(labels)),
    }
