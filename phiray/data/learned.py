"""The learned annotator (``annotate.annotator=learned``): the labelled set's dev grades, distilled.

phi-1 labels its sample with GPT-4; offline, phiray's rule-based heuristic was the only annotator, and the
classifier can only learn what its annotator knows (its agreement with a person's grades bounds the
filter: RESULTS.md, issue 28). This annotator is an ordinal model fitted on the person-graded ``dev``
split of ``phiray/data/labels/code_labels.json``: one logistic regression per grade step (P(grade >= k),
k = 1..5) on the standardised structural features of :mod:`phiray.data.features`; a file's expected grade
is the sum of those probabilities and its label that sum rounded to 0-5.

The fitted model ships as plain numbers in ``phiray/data/labels/annotator.json`` (no pickle: any
scikit-learn reads it, and a diff shows what changed). Refit it after changing the features or the dev
labels, on dev only::

    python benchmarks/filter_quality.py --fit-annotator

A file that does not parse gets the features' zeros and is scored like any other (usually 0-1).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Sequence

import numpy as np

from phiray.data.features import NAMES, structure_matrix

MODEL_PATH = "labels/annotator.json"
C = 0.1  # inverse regularisation, chosen on dev by package-grouped cross-validation (RESULTS.md, issue 28)


def fit(texts: Sequence[str], grades: Sequence[int], version: str, source: str) -> dict:
    """The ordinal model of ``grades`` from ``texts``' structural features, as the JSON-able dict
    :func:`expected_grades` reads."""
    from sklearn.linear_model import LogisticRegression

    x = structure_matrix(texts).astype(np.float64)
    g = np.asarray(grades, int)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    steps = []
    for k in range(1, 6):
        y = (g >= k).astype(int)
        if 0 < y.sum() < len(y):
            m = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(z, y)
            steps.append(
                {
                    "grade": k,
                    "coef": [round(float(v), 6) for v in m.coef_[0]],
                    "intercept": round(float(m.intercept_[0]), 6),
                }
            )
    return {
        "version": version,
        "fitted_on": source,
        "n": int(len(g)),
        "C": C,
        "features": list(NAMES),
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "steps": steps,
    }


@functools.lru_cache(maxsize=1)
def shipped() -> dict:
    """The shipped model (``annotator.json``), checked against this code's feature list."""
    model = json.loads(resources.files("phiray.data").joinpath(MODEL_PATH).read_text())
    if model["features"] != list(NAMES):
        raise ValueError(
            f"phiray/data/{MODEL_PATH} was fitted on other features than phiray.data.features.NAMES; "
            "refit it: python benchmarks/filter_quality.py --fit-annotator"
        )
    return model


def version() -> str:
    return shipped()["version"]


def _step_logits(model: dict, x: np.ndarray) -> np.ndarray:
    z = (x - np.asarray(model["mean"])) / np.asarray(model["scale"])
    w = np.asarray([s["coef"] for s in model["steps"]])
    return z @ w.T + np.asarray([s["intercept"] for s in model["steps"]])


def expected_grades(texts: Sequence[str], model: dict | None = None, x: np.ndarray | None = None) -> np.ndarray:
    """Each text's expected 0-5 grade: the sum over grade steps k of P(grade >= k) (``x``: the texts'
    structural features, when already computed)."""
    model = model or shipped()
    if not len(texts):
        return np.zeros(0)
    x = structure_matrix(texts) if x is None else x
    logits = _step_logits(model, x.astype(np.float64))
    return (1 / (1 + np.exp(-logits))).sum(axis=1)


def learned_batch(texts: Sequence[str]) -> list[tuple[int, str]]:
    """``(grade, reason)`` per text, like :func:`phiray.data.annotators.heuristic_batch`: the rounded expected
    grade, and the two features that pushed P(grade >= 3) up and down the most."""
    model = shipped()
    if not len(texts):
        return []
    x = structure_matrix(texts).astype(np.float64)
    expected = expected_grades(texts, model, x)
    high = next((s for s in model["steps"] if s["grade"] == 3), model["steps"][-1])
    push = (x - np.asarray(model["mean"])) / np.asarray(model["scale"]) * np.asarray(high["coef"])
    out = []
    for e, p in zip(expected, push):
        up, down = NAMES[int(np.argmax(p))], NAMES[int(np.argmin(p))]
        out.append((int(np.clip(np.rint(e), 0, 5)), f"expected grade {e:.2f}; most for: {up}; most against: {down}"))
    return out
