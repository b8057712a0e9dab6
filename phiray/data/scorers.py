"""Quality scoring: the callable class a Ray Data actor pool maps over document batches.

Each actor builds the embedder and unpickles the forest once (in ``__init__``) and then scores batches;
embeddings are only returned when asked (``keep_embeddings``), never materialised otherwise.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from phiray.config import ClassifyConfig, EmbedConfig
from phiray.data.annotators import heuristic_batch
from phiray.data.embed import make_embedder
from phiray.data.features import structure_matrix
from phiray.data.learned import expected_grades


def load_forest_bytes(model_bytes: bytes):
    import joblib

    return joblib.load(io.BytesIO(model_bytes))


def build_forest(cc: ClassifyConfig, seed: int):
    """The unfitted forest ``classify.*`` describes: a classifier of the 0/1 label or a regressor of the grade."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    shape = {
        "n_estimators": cc.n_estimators,
        "max_depth": cc.max_depth,
        "min_samples_leaf": cc.min_samples_leaf,
        "random_state": seed,
        "n_jobs": cc.n_jobs,
    }
    if cc.target == "grade":
        return RandomForestRegressor(**shape)
    return RandomForestClassifier(**shape, class_weight=None if cc.class_weight == "none" else cc.class_weight)


def build_model(cc: ClassifyConfig, seed: int):
    """The unfitted estimator ``classify.model`` names, for ``classify.target`` (label or grade)."""
    if cc.model == "forest":
        return build_forest(cc, seed)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if cc.model == "boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        if cc.target == "grade":
            return HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, random_state=seed)
        weight = None if cc.class_weight == "none" else cc.class_weight
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed, class_weight=weight)
    from sklearn.linear_model import LogisticRegression, Ridge

    if cc.target == "grade":
        return make_pipeline(StandardScaler(), Ridge(alpha=10.0))
    weight = None if cc.class_weight == "none" else cc.class_weight
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000, class_weight=weight))


class QualityModel:
    """A fitted estimator and the inputs it reads (``classify.features``): embeddings, structural features of
    the text (:mod:`phiray.data.features`), or both. Pickled whole into classify/model."""

    def __init__(self, estimator, features: str = "embedding"):
        self.estimator, self.features = estimator, features

    @property
    def needs_embedding(self) -> bool:
        return self.features != "structure"

    def matrix(self, texts, embeddings: np.ndarray | None) -> np.ndarray:
        if self.features == "embedding":
            return embeddings
        structure = structure_matrix(texts)
        return structure if self.features == "structure" else np.hstack([embeddings, structure])

    def scores(self, texts, embeddings: np.ndarray | None) -> np.ndarray:
        return quality_scores(self.estimator, self.matrix(texts, embeddings))

    @property
    def n_jobs(self):
        return getattr(self.estimator, "n_jobs", None)

    @n_jobs.setter
    def n_jobs(self, value):
        if hasattr(self.estimator, "n_jobs"):
            self.estimator.n_jobs = value


class AnnotatorModel(QualityModel):
    """``classify.model=annotator``: the offline annotator itself as the scorer, nothing fitted. ``learned``:
    its shipped weights' expected grade / 5 (:mod:`phiray.data.learned`); ``heuristic``: its 0-5 rules' grade / 5."""

    def __init__(self, annotator: str = "learned"):
        if annotator not in ("learned", "heuristic"):
            raise ValueError(f"classify.model=annotator: the {annotator!r} annotator has no model to score with")
        super().__init__(None, "structure")
        self.annotator = annotator

    def scores(self, texts, embeddings: np.ndarray | None) -> np.ndarray:
        if self.annotator == "heuristic":
            grades = np.asarray([g for g, _ in heuristic_batch(list(texts))], np.float64)
        else:
            grades = expected_grades(list(texts))
        return np.clip(grades / 5.0, 0.0, 1.0).astype(np.float64)


def quality_scores(forest, x: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] from classify's forest: a classifier's probability of 'high quality', or a
    regressor's predicted 0-5 grade / 5 (``classify.target``)."""
    if hasattr(forest, "predict_proba"):
        return forest.predict_proba(x)[:, 1].astype(np.float64)
    return np.clip(forest.predict(x) / 5.0, 0.0, 1.0).astype(np.float64)


class QualityScorer:
    """``table -> table + score`` (the saved forest's :func:`quality_scores`).

    ``known`` = (ids, embeddings) already computed with the same embedder (classify's labelled sample):
    those documents are not embedded again."""

    def __init__(
        self,
        embed_cfg: EmbedConfig,
        model_bytes: bytes,
        keep_embeddings: bool = False,
        known: tuple[list[str], np.ndarray] | None = None,
    ):
        self.forest = load_forest_bytes(model_bytes)
        needs = not isinstance(self.forest, QualityModel) or self.forest.needs_embedding
        self.embedder = make_embedder(embed_cfg) if needs else None  # structure only: no model to load
        self.forest.n_jobs = 1  # one actor = one core's worth of work; parallelism comes from the pool
        self.keep_embeddings = keep_embeddings
        ids, vectors = known if known is not None else ([], np.zeros((0, 0), np.float32))
        self.known = dict(zip(ids, range(len(ids))))
        self.known_vectors = vectors
        self.reused = 0

    def embed(self, texts: list[str], ids: list[str] | None = None) -> np.ndarray:
        """Embeddings of ``texts``: looked up for the ids in ``known``, computed for the others."""
        rows = [self.known.get(i, -1) for i in ids] if ids is not None and self.known else [-1] * len(texts)
        todo = [k for k, r in enumerate(rows) if r < 0]
        if len(todo) == len(texts):
            return self.embedder.embed(texts)
        x = np.empty((len(texts), self.known_vectors.shape[1]), np.float32)
        for k, r in enumerate(rows):
            if r >= 0:
                x[k] = self.known_vectors[r]
        if todo:
            x[todo] = self.embedder.embed([texts[k] for k in todo])
        self.reused += len(texts) - len(todo)
        return x

    def scores(self, texts: list[str], ids: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(self.forest, QualityModel):
            x = self.embed(texts, ids) if self.forest.needs_embedding else np.zeros((len(texts), 0), np.float32)
            return self.forest.scores(texts, x), x
        x = self.embed(texts, ids)
        return quality_scores(self.forest, x), x

    def __call__(self, table: pa.Table) -> pa.Table:
        ids = table["id"].to_pylist() if "id" in table.column_names else None
        proba, x = self.scores(table["text"].to_pylist(), ids)
        table = table.append_column("score", pa.array(proba, pa.float64()))
        if self.keep_embeddings:
            table = table.append_column("embedding", pa.array(x.tolist(), pa.list_(pa.float32())))
        return table


class DocumentEmbedder:
    """``table -> (id, embedding)``: the pool embeddings active annotation chooses from (one embedder per actor)."""

    def __init__(self, embed_cfg: EmbedConfig):
        self.embedder = make_embedder(embed_cfg)

    def __call__(self, table: pa.Table) -> pa.Table:
        x = self.embedder.embed(table["text"].to_pylist())
        return pa.table({"id": table["id"], "embedding": pa.array(x.tolist(), pa.list_(pa.float32()))})


def embed_on_pool(ds, cfg) -> dict[str, np.ndarray]:
    """{id: embedding} of a dataset of (id, text), embedded by the filter's actor pool (``filter.actors``
    embedders; GPUs with ``filter.num_gpus_per_actor``): every core embeds, not one task. For samples the
    driver may hold (a labelled sample, an annotation pool), never the corpus."""
    import ray.data

    fc = cfg.filter
    vectors = ds.select_columns(["id", "text"]).map_batches(
        DocumentEmbedder,
        fn_constructor_args=(cfg.embed,),
        batch_size=fc.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=fc.actors),
        num_cpus=fc.num_cpus_per_actor,
        num_gpus=fc.num_gpus_per_actor or None,
    )
    return {r["id"]: np.asarray(r["embedding"], np.float32) for r in vectors.take_all()}
