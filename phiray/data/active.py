"""Active learning of what to annotate: spend the labelling budget where the forest is unsure.

Round 0 labels a seeded random sample; every later round fits the forest on the labels so far, scores the
unlabelled pool, takes the ``oversample x round_size`` most uncertain documents (probability nearest 0.5),
clusters their embeddings into ``round_size`` groups (k-means) and labels the most uncertain document of
each group: uncertain, but not ``round_size`` copies of the same kind of file. Plain numpy/scikit-learn:
the annotate stage and ``benchmarks/active_learning.py`` drive it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from phiray.config import ClassifyConfig


def fit_forest(x: np.ndarray, y: np.ndarray, cc: ClassifyConfig, seed: int):
    """The classify stage's forest (same settings), fitted on ``x, y``."""
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(
        n_estimators=cc.n_estimators, max_depth=cc.max_depth, min_samples_leaf=cc.min_samples_leaf,
        class_weight=None if cc.class_weight == "none" else cc.class_weight, random_state=seed, n_jobs=cc.n_jobs)
    return forest.fit(x, y)


def uncertainty(proba: np.ndarray) -> np.ndarray:
    """1 at p = 0.5, 0 at p in {0, 1}."""
    return 1.0 - np.abs(2.0 * proba - 1.0)


def pick_uncertain_diverse(x_pool: np.ndarray, proba: np.ndarray, k: int, seed: int, oversample: int = 4) -> np.ndarray:
    """Indices (into the pool) of ``k`` documents: the most uncertain of each k-means cluster of the
    ``oversample * k`` most uncertain ones."""
    from sklearn.cluster import KMeans

    k = min(k, len(proba))
    if k <= 0:
        return np.zeros(0, np.int64)
    unsure = uncertainty(proba)
    order = np.argsort(-unsure, kind="stable")
    candidates = order[: min(len(order), max(k, oversample * k))]
    if len(candidates) <= k:
        return candidates
    groups = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(x_pool[candidates])
    picked = [candidates[groups == g][np.argmax(unsure[candidates[groups == g]])] for g in range(k) if (groups == g).any()]
    rest = [i for i in candidates if i not in set(picked)]  # k-means may leave a cluster empty
    return np.asarray((picked + rest)[:k], np.int64)


def positives(scores: Sequence[int | None], positive_min_score: int) -> np.ndarray:
    return np.asarray([int(s is not None and s >= positive_min_score) for s in scores], np.int64)


def run_rounds(x_pool: np.ndarray, label: Callable[[np.ndarray], list[int | None]], *, seed_size: int,
               rounds: int, round_size: int, cc: ClassifyConfig, seed: int, random_share: float = 0.0,
               on_round: Callable[[int, np.ndarray, list], None] | None = None) -> tuple[np.ndarray, list, list[int]]:
    """Label ``seed_size`` random pool documents, then ``rounds`` rounds of ``round_size`` chosen ones.

    ``random_share`` of each round is drawn at random from the rest of the pool (exploration: uncertainty
    alone keeps asking about the files the labels are least sure of). ``label(indices) -> scores`` asks the annotator (None: no usable answer; such a document is not asked
    again and does not train). Returns (labelled indices in labelling order, their scores, round of each).
    A round falls back to random picks while the labels hold a single class (no forest can be fitted)."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(x_pool), size=min(seed_size, len(x_pool)), replace=False)
    labelled, scores, round_of = list(chosen), list(label(chosen)), [0] * len(chosen)
    if on_round:
        on_round(0, chosen, scores)
    for r in range(1, rounds + 1):
        asked = np.zeros(len(x_pool), bool)
        asked[labelled] = True
        free = np.flatnonzero(~asked)
        if not len(free):
            break
        usable = [i for i, s in enumerate(scores) if s is not None]
        y = positives([scores[i] for i in usable], cc.positive_min_score)
        if len(set(y.tolist())) < 2:
            picks = rng.choice(free, size=min(round_size, len(free)), replace=False)
        else:
            forest = fit_forest(x_pool[[labelled[i] for i in usable]], y, cc, seed + r)
            proba = forest.predict_proba(x_pool[free])[:, 1]
            n_random = int(round(random_share * round_size))
            picks = free[pick_uncertain_diverse(x_pool[free], proba, round_size - n_random, seed + r)]
            rest = np.setdiff1d(free, picks)
            if n_random and len(rest):
                picks = np.concatenate([picks, rng.choice(rest, size=min(n_random, len(rest)), replace=False)])
        new = label(picks)
        labelled += list(picks)
        scores += list(new)
        round_of += [r] * len(picks)
        if on_round:
            on_round(r, picks, new)
    return np.asarray(labelled, np.int64), scores, round_of
