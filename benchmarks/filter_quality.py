"""Filter quality under the honest protocol: tune on the labelled set's dev split, quote its test split once.

The classifier is trained as the tiny preset trains it: the heuristic annotator grades a seeded sample of
``--train`` standard-library files (of ``--corpus`` drawn like ingest's spread sample), and classify's model
(``--model``, ``--features``, target = grade) is fitted on those grades. It then scores the corpus (for a
keep-fraction cut) and the labelled files of one split of ``phiray/data/labels/code_labels.json`` (graded by
a person against GUIDE.md, split by package). Printed: ROC-AUC (high = grade >= 3), Spearman of the score
with the grade, high kept and low kept at each candidate cut, and the agreement of the heuristic annotator
with the labels (Cohen's kappa, quadratic kappa, Spearman).

    # tuning: every model x features x cut on dev; the chosen setting is the one to ship
    .venv/bin/python benchmarks/filter_quality.py --split dev --sweep
    # the figure: the shipped setting on test, once
    .venv/bin/python benchmarks/filter_quality.py --split test --model linear --features structure --cut grade:2.5

``--cut keep:F`` keeps the top fraction F of the corpus scores; ``--cut grade:G`` keeps predicted grade >= G
(``filter.threshold = G / 5``). ``--embed hashing|minilm`` sets the embedder for features=embedding|both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

CUTS = ("keep:0.1", "keep:0.15", "keep:0.2", "grade:2.0", "grade:2.5", "grade:3.0")


def training_corpus(n_corpus: int, n_train: int, seed: int) -> tuple[list[str], list[str], list[int]]:
    """(corpus texts, train texts, their heuristic grades): the tiny preset's stdlib sample and annotation."""
    from phiray.data import readers
    from phiray.data.annotators import heuristic_score

    paths = readers.list_stdlib()
    rng = np.random.default_rng(seed)
    texts = []
    for i in rng.permutation(len(paths)):
        row = readers.read_text_file(paths[i], "stdlib", 1, 200_000)
        if row.get("text"):
            texts.append(row["text"])
        if len(texts) == n_corpus:
            break
    train = [texts[i] for i in rng.choice(len(texts), size=min(n_train, len(texts)), replace=False)]
    return texts, train, [heuristic_score(t)[0] for t in train]


def embedder(kind: str):
    from phiray.config import EmbedConfig
    from phiray.data.embed import make_embedder

    if kind == "minilm":
        return make_embedder(EmbedConfig(kind="sentence-transformers", max_length=128, max_tokens=512))
    return make_embedder(EmbedConfig(kind="hashing"))


def fit(train_texts, grades, model: str, features: str, embed, cache: dict, seed: int = 0):
    from phiray.config import ClassifyConfig
    from phiray.data.scorers import QualityModel, build_model

    cc = ClassifyConfig(target="grade", model=model, features=features, n_estimators=100)
    qm = QualityModel(None, features)
    x = embeddings(train_texts, embed, cache) if qm.needs_embedding else None
    qm.estimator = build_model(cc, seed).fit(qm.matrix(train_texts, x), np.asarray(grades))
    return qm


def embeddings(texts, embed, cache: dict):
    key = (id(texts), len(texts))
    if key not in cache:
        cache[key] = embed.embed(texts)
    return cache[key]


def score(qm, texts, embed, cache):
    return qm.scores(texts, embeddings(texts, embed, cache) if qm.needs_embedding else None)


def at_cut(cut: str, corpus_scores: np.ndarray, scores: np.ndarray, rows: list[dict]) -> dict:
    from phiray.data.cuts import cutoff

    kind, value = cut.split(":")
    threshold = cutoff(corpus_scores, None, float(value)) if kind == "keep" else float(value) / 5
    high = np.asarray([r["high"] for r in rows], bool)
    kept = scores >= threshold
    return {
        "cut": cut,
        "threshold": round(float(threshold), 4),
        "high_kept": round(float(kept[high].mean()), 4),
        "low_kept": round(float(kept[~high].mean()), 4),
        "corpus_kept": round(float((corpus_scores >= threshold).mean()), 4),
        "precision": round(float(high[kept].mean()), 4) if kept.any() else None,
    }


def evaluate(qm, rows, corpus, embed, cache, cuts) -> dict:
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    texts = [r["text"] for r in rows]
    s = score(qm, texts, embed, cache)
    corpus_scores = score(qm, corpus, embed, cache)
    grades = np.asarray([r["grade"] for r in rows])
    return {
        "roc_auc": round(float(roc_auc_score([r["high"] for r in rows], s)), 4),
        "spearman": round(float(spearmanr(grades, s).statistic), 4),
        "cuts": [at_cut(c, corpus_scores, s, rows) for c in cuts],
    }


def annotator_agreement(rows) -> dict:
    from phiray.data.annotators import heuristic_score
    from phiray.data.code_labels import agreement

    return {
        "heuristic": agreement([r["grade"] for r in rows], [heuristic_score(r["text"])[0] for r in rows]),
        "llm_judge": "not measured offline (no judge model here; see RESULTS.md)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["dev", "test"], required=True)
    ap.add_argument("--sweep", action="store_true", help="every model x features x cut (dev only)")
    ap.add_argument("--model", default="linear", choices=["forest", "boosting", "linear"])
    ap.add_argument("--features", default="structure", choices=["embedding", "structure", "both"])
    ap.add_argument("--cut", default="grade:2.5")
    ap.add_argument("--embed", default="hashing", choices=["hashing", "minilm"])
    ap.add_argument("--corpus", type=int, default=600)
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.sweep and args.split != "dev":
        sys.exit("--sweep tunes: it runs on --split dev only (the test split is quoted once, with one setting)")
    from phiray.data import code_labels

    rows, skipped = code_labels.load(args.split)
    corpus, train, grades = training_corpus(args.corpus, args.train, args.seed)
    embed, cache = embedder(args.embed), {}
    out = {
        "split": args.split,
        "files": len(rows),
        "high": int(sum(r["high"] for r in rows)),
        "skipped": {k: len(v) for k, v in skipped.items()},
        "train_positive_rate": round(float(np.mean(np.asarray(grades) >= 3)), 4),
        "annotators": annotator_agreement(rows),
        "load_average": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
    }
    settings = (
        [(m, f) for m in ("forest", "boosting", "linear") for f in ("structure", "embedding", "both")]
        if args.sweep
        else [(args.model, args.features)]
    )
    out["results"] = []
    for model, features in settings:
        qm = fit(train, grades, model, features, embed, cache, args.seed)
        res = evaluate(qm, rows, corpus, embed, cache, CUTS if args.sweep else [args.cut])
        out["results"].append({"model": model, "features": features, "embed": args.embed, **res})
        print(
            f"{model:9s} {features:10s} auc={res['roc_auc']} rho={res['spearman']} "
            + "  ".join(f"{c['cut']}: hi {c['high_kept']:.2f} lo {c['low_kept']:.3f}" for c in res["cuts"]),
            flush=True,
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
