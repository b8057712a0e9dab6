"""Active learning of what to annotate: spend the labelling budget where it teaches the forest most.

Round 0 labels a seed set that covers the pool (``cold_start="coverage"``: the document nearest each
k-means centre; or a seeded random sample). Every later round fits the forest on the labels so far, scores the
unlabelled pool and fills a batch of ``round_size`` from two sources (batch-mode: no two picks of a
round stand for the same kind of file):

- uncertain: the ``oversample x n`` documents nearest p = 0.5, clustered into ``n`` groups (k-means), the
  most uncertain of each group;
- coverage: k-means of the whole unlabelled pool, the document nearest each centre, the regions farthest
  from any label first. Uncertainty alone keeps asking about the files whose label is least stable (where
  the annotator itself is unsure) and leaves the labelled set unlike the corpus; coverage keeps it
  representative, and it is what still helps once the forest is sure of most of what is left.

``uncertain_share`` of each round (after ``random_share``, drawn at random) is uncertain, the rest is
coverage. When the pool runs dry (fewer unlabelled documents than one round) the rest is labelled and the
rounds stop. Plain numpy/scikit-learn: the annotate stage and ``benchmarks/active_learning.py`` drive it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from phiray.config import ClassifyConfig
from phiray.data.scorers import build_forest


def fit_forest(x: np.ndarray, y: np.ndarray, cc: ClassifyConfig, seed: int):
    """The classify stage's forest (same settings) as a classifier of the 0/1 labels ``y``, fitted on ``x``:
    uncertainty is about which side of the cut a document falls, whatever ``classify.target`` is."""
    return build_forest(cc.model_copy(update={"target": "label"}), seed).fit(x, y)


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
    picked = [
        candidates[groups == g][np.argmax(unsure[candidates[groups == g]])] for g in range(k) if (groups == g).any()
    ]
    rest = [i for i in candidates if i not in set(picked)]  # k-means may leave a cluster empty
    return np.asarray((picked + rest)[:k], np.int64)


def pick_representative(x_free: np.ndarray, x_labelled: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices (into ``x_free``) of ``k`` documents that stand for the unlabelled pool: k-means of it into
    ``k`` groups, the document nearest each centre, the groups farthest from any labelled document first."""
    from sklearn.cluster import KMeans

    k = min(k, len(x_free))
    if k <= 0:
        return np.zeros(0, np.int64)
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x_free)
    picks, gaps = [], []
    for group in range(k):
        members = np.flatnonzero(km.labels_ == group)
        if not len(members):
            continue
        nearest = members[np.argmin(np.linalg.norm(x_free[members] - km.cluster_centers_[group], axis=1))]
        picks.append(int(nearest))
        gaps.append(np.linalg.norm(x_labelled - x_free[nearest], axis=1).min() if len(x_labelled) else 0.0)
    return np.asarray(picks, np.int64)[np.argsort(-np.asarray(gaps), kind="stable")]


def pick_batch(
    x_free: np.ndarray, proba: np.ndarray, x_labelled: np.ndarray, k: int, seed: int, uncertain_share: float
) -> np.ndarray:
    """``k`` distinct indices into the unlabelled pool: ``uncertain_share`` of them by
    :func:`pick_uncertain_diverse`, the rest by :func:`pick_representative` of what those leave."""
    k = min(k, len(x_free))
    uncertain = pick_uncertain_diverse(x_free, proba, int(round(uncertain_share * k)), seed)
    rest = np.setdiff1d(np.arange(len(x_free)), uncertain)
    covering = rest[pick_representative(x_free[rest], x_labelled, k - len(uncertain), seed)]
    return np.concatenate([uncertain, covering]).astype(np.int64)


def seed_set(x_pool: np.ndarray, size: int, seed: int, rng: np.random.Generator, cold_start: str) -> np.ndarray:
    """The first ``size`` pool documents to label, before any forest: a seeded random sample, or
    ``coverage``: the document nearest each k-means centre of the pool (topped up at random should
    k-means leave a group empty), so every kind of file is labelled once. A random seed set of 20 from a pool
    that is 14% positive holds ~3 positives, some seeds fewer, and the first forests are then guesses."""
    size = min(size, len(x_pool))
    if cold_start == "random":
        return rng.choice(len(x_pool), size=size, replace=False)
    if cold_start != "coverage":
        raise ValueError(f"cold_start must be 'random' or 'coverage', not {cold_start!r}")
    chosen = pick_representative(x_pool, x_pool[:0], size, seed)
    rest = np.setdiff1d(np.arange(len(x_pool)), chosen)
    return np.concatenate([chosen, rng.choice(rest, size=size - len(chosen), replace=False)]).astype(np.int64)


def positives(scores: Sequence[int | None], positive_min_score: int) -> np.ndarray:
    return np.asarray([int(s is not None and s >= positive_min_score) for s in scores], np.int64)


def run_rounds(
    x_pool: np.ndarray,
    label: Callable[[np.ndarray], list[int | None]],
    *,
    seed_size: int,
    rounds: int,
    round_size: int,
    cc: ClassifyConfig,
    seed: int,
    random_share: float = 0.0,
    uncertain_share: float = 0.5,
    cold_start: str = "coverage",
    on_round: Callable[[int, np.ndarray, list], None] | None = None,
) -> tuple[np.ndarray, list, list[int]]:
    """Label a seed set of ``seed_size`` pool documents (:func:`seed_set`), then ``rounds`` rounds of
    ``round_size`` chosen ones.

    Each round: ``random_share`` drawn at random (exploration), of the rest ``uncertain_share`` by
    uncertainty and the remainder by coverage (see the module docstring). ``label(indices) -> scores`` asks
    the annotator (None: no usable answer; such a document is not asked again and does not train). Returns
    (labelled indices in labelling order, their scores, round of each). A round falls back to random picks
    while the labels hold a single class (no forest can be fitted); once no more than one round's worth
    is left unlabelled, that rest is labelled and the rounds stop (nothing is left to choose between)."""
    rng = np.random.default_rng(seed)
    chosen = seed_set(x_pool, seed_size, seed, rng, cold_start)
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
        if len(free) <= round_size:
            picks = free  # the pool has run dry
        elif len(set(y.tolist())) < 2:
            picks = rng.choice(free, size=round_size, replace=False)
        else:
            trained = [labelled[i] for i in usable]
            forest = fit_forest(x_pool[trained], y, cc, seed + r)
            proba = forest.predict_proba(x_pool[free])[:, 1]
            n_random = int(round(random_share * round_size))
            picks = free[
                pick_batch(x_pool[free], proba, x_pool[trained], round_size - n_random, seed + r, uncertain_share)
            ]
            rest = np.setdiff1d(free, picks)
            if n_random and len(rest):
                picks = np.concatenate([picks, rng.choice(rest, size=min(n_random, len(rest)), replace=False)])
        new = label(picks)
        labelled += list(picks)
        scores += list(new)
        round_of += [r] * len(picks)
        if on_round:
            on_round(r, picks, new)
        if len(picks) == len(free):
            break
    return np.asarray(labelled, np.int64), scores, round_of
