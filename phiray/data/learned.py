"""The learned annotator (``annotate.annotator=learned``): the labelled set's dev grades, distilled.

phi-1 labels its sample with GPT-4; offline, phiray's rule-based heuristic was the only annotator, and the
classifier can only learn what its annotator knows (its agreement with a person's grades bounds the
filter: RESULTS.md, issue 28). This annotator is fitted on the person-graded ``dev`` split of
``phiray/data/labels/code_labels.json`` and has two parts, averaged in grade points:

- **structure**: an ordinal model, one logistic regression per grade step (P(grade >= k), k = 1..5) on the
  standardised structural features of :mod:`phiray.data.features`; its grade is the sum of those probabilities;
- **words**: a logistic regression of "high" (grade >= 3) on the file's TF-IDF of identifier sub-words
  (``split_words``: ``parse_HTTPRequest`` -> parse, http, request), which sees what a file is *about*
  (a tree and its nodes, a request and its headers) where the structure sees only how it is written; its
  grade is 5 x P(high).

A file's expected grade is ``(1 - words_weight) * structure + words_weight * words`` and its label that
rounded to 0-5. Package-grouped cross-validation on dev chose the parts and their weight (ROC-AUC 0.84 for
the structure alone, 0.88 for both: RESULTS.md, issue 28).

The fitted model ships as plain numbers in ``phiray/data/labels/annotator.json`` (no pickle: any reader can
use it, and a diff shows what changed). Refit it after changing the features or the dev labels, on dev only::

    python benchmarks/filter_quality.py --fit-annotator

A file that does not parse gets the features' zeros and is scored like any other (usually 0-1).
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Sequence

import numpy as np

from phiray.data.features import NAMES, structure_matrix

MODEL_PATH = "labels/annotator.json"
VERSION = "learned-v2"
C = 0.1  # the structure part's inverse regularisation (package-grouped CV on dev)
WORDS_C = 1.0  # the words part's (same)
WORDS_WEIGHT = 0.5  # the words part's share of the expected grade (same)
WORDS_MIN_DF = 3  # a sub-word in fewer dev files is not in the vocabulary
WORDS_MAX = 5000  # the vocabulary's size at most (most frequent first)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SPLIT = re.compile(r"_+|(?<=[a-z])(?=[A-Z])")


def split_words(text: str) -> list[str]:
    """The lower-cased sub-words of every identifier and word in ``text`` (snake_case and CamelCase split),
    of 2 characters or more: the words part's tokens."""
    out = []
    for word in _IDENTIFIER.findall(text):
        out += [p.lower() for p in _SPLIT.split(word) if len(p) > 1]
    return out


def words_vectorizer(vocabulary: dict[str, int] | None = None, idf: np.ndarray | None = None):
    """scikit-learn's TF-IDF over :func:`split_words` (1 + log tf, times idf, L2-normalised): unfitted for
    :func:`fit`, or set to the shipped model's ``vocabulary`` and ``idf`` (no refit) to score."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        tokenizer=split_words,
        lowercase=False,
        token_pattern=None,
        min_df=WORDS_MIN_DF,
        max_features=WORDS_MAX,
        sublinear_tf=True,
        vocabulary=vocabulary,
    )
    if idf is not None:
        vec.idf_ = idf
    return vec


def _fit_words(texts: Sequence[str], high: np.ndarray) -> dict:
    from sklearn.linear_model import LogisticRegression

    vec = words_vectorizer()
    x = vec.fit_transform(texts)
    m = LogisticRegression(C=WORDS_C, max_iter=5000, class_weight="balanced").fit(x, high)
    words = vec.get_feature_names_out()
    return {
        "weight": WORDS_WEIGHT,
        "C": WORDS_C,
        "words": [str(w) for w in words],
        "idf": [round(float(v), 6) for v in vec.idf_],
        "coef": [round(float(v), 6) for v in m.coef_[0]],
        "intercept": round(float(m.intercept_[0]), 6),
    }


def fit(texts: Sequence[str], grades: Sequence[int], version: str, source: str) -> dict:
    """The two-part model of ``grades`` from ``texts``, as the JSON-able dict :func:`expected_grades` reads."""
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
    high = (g >= 3).astype(int)
    return {
        "version": version,
        "fitted_on": source,
        "n": int(len(g)),
        "C": C,
        "features": list(NAMES),
        "mean": [round(float(v), 6) for v in mean],
        "scale": [round(float(v), 6) for v in scale],
        "steps": steps,
        "words": _fit_words(texts, high) if 0 < high.sum() < len(high) else None,
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


@functools.lru_cache(maxsize=4)
def _scoring_vectorizer(words: tuple[str, ...], idf: tuple[float, ...]):
    return words_vectorizer({w: i for i, w in enumerate(words)}, np.asarray(idf))


def words_grades(texts: Sequence[str], words: dict) -> np.ndarray:
    """The words part's grade of each text: 5 x P(high) from its identifier sub-words."""
    x = _scoring_vectorizer(tuple(words["words"]), tuple(words["idf"])).transform(texts)  # sparse
    return 5.0 / (1.0 + np.exp(-(x @ np.asarray(words["coef"]) + words["intercept"])))


def expected_grades(texts: Sequence[str], model: dict | None = None, x: np.ndarray | None = None) -> np.ndarray:
    """Each text's expected 0-5 grade: the structure part (sum over grade steps k of P(grade >= k)) blended with
    the words part (``x``: the texts' structural features, when already computed)."""
    model = model or shipped()
    if not len(texts):
        return np.zeros(0)
    x = structure_matrix(texts) if x is None else x
    structure = (1 / (1 + np.exp(-_step_logits(model, x.astype(np.float64))))).sum(axis=1)
    words = model.get("words")
    if not words:
        return structure
    return (1 - words["weight"]) * structure + words["weight"] * words_grades(texts, words)


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
