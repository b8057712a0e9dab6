"""Filter quality under the honest protocol: tune on the labelled set's dev split, quote its test split once.

The classifier is trained as the tiny preset trains it: the annotator (``--annotator``, default the learned one
of ``phiray.data.learned``; on dev refitted out of fold, so no dev file is graded by a model that saw it) grades a seeded sample of
``--train`` standard-library files (of ``--corpus`` drawn like ingest's spread sample), and classify's model
(``--model``, ``--features``, target = grade) is fitted on those grades. It then scores the corpus (for a
keep-fraction cut) and the labelled files of one split of ``phiray/data/labels/code_labels.json`` (graded by
a person against GUIDE.md, split by package). Printed: ROC-AUC (high = grade >= 3), Spearman of the score
with the grade, high kept and low kept at each candidate cut, and the agreement of each annotator
with the labels (Cohen's kappa, quadratic kappa, Spearman).

    # tuning: every model x features x cut on dev; the chosen setting is the one to ship
    .venv/bin/python benchmarks/filter_quality.py --split dev --sweep
    # the figure: the shipped setting on test, once
    .venv/bin/python benchmarks/filter_quality.py --split test --model forest --features structure --cut keep:0.15

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

FOLDS = 10  # package-grouped folds on dev (the learned annotator is refitted without each fold)
CUTS = ("keep:0.08", "keep:0.1", "keep:0.12", "keep:0.15", "keep:0.2", "grade:2.0", "grade:2.5", "grade:3.0")


def training_corpus(
    n_corpus: int, n_train: int, seed: int, annotator: str = "learned"
) -> tuple[list[str], list[str], list[int]]:
    """(corpus texts, train texts, their annotator grades): the tiny preset's stdlib sample and annotation."""
    from phiray.data import readers

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
    return texts, train, [grade for grade, _ in annotate(annotator, train)]


def annotate(annotator: str, texts: list[str]) -> list[tuple[int, str]]:
    from phiray.data.annotators import heuristic_batch
    from phiray.data.learned import learned_batch

    return learned_batch(texts) if annotator == "learned" else heuristic_batch(texts)


def package_groups(rows) -> list[str]:
    """Cross-validation groups: the package (each top-level standard-library module on its own)."""
    return [r["package"] if r["package"] != "stdlib" else "stdlib:" + r["path"].split("/")[0] for r in rows]


def learned_cv(rows, folds: int | None = None) -> np.ndarray:
    """Out-of-fold expected grades of the learned annotator on ``rows`` (dev): each fold's files are graded by a
    model fitted on the other packages, so the figure is not in-sample."""
    from sklearn.model_selection import GroupKFold

    from phiray.data.learned import expected_grades
    from phiray.data.learned import fit as fit_learned

    texts, grades = [r["text"] for r in rows], np.asarray([r["grade"] for r in rows])
    out = np.zeros(len(rows))
    for train, held in GroupKFold(folds or FOLDS).split(texts, grades, package_groups(rows)):
        model = fit_learned([texts[i] for i in train], grades[train], "cv", "cv")
        out[held] = expected_grades([texts[i] for i in held], model)
    return out


def embedder(kind: str):
    from phiray.config import EmbedConfig
    from phiray.data.embed import make_embedder

    if kind == "minilm":
        return make_embedder(EmbedConfig(kind="sentence-transformers", max_length=128, max_tokens=512))
    return make_embedder(EmbedConfig(kind="hashing"))


def inputs(features: str, structure: np.ndarray, embedded) -> np.ndarray:
    """classify's model inputs (as ``QualityModel.matrix`` lays them out) from cached parts."""
    if features == "structure":
        return structure
    return embedded() if features == "embedding" else np.hstack([embedded(), structure])


def threshold_of(cut: str, corpus_scores: np.ndarray) -> float:
    from phiray.data.cuts import cutoff

    kind, value = cut.split(":")
    return cutoff(corpus_scores, None, float(value)) if kind == "keep" else float(value) / 5


def folds_of(rows, split: str, annotator: str) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(held-out rows, the rows the learned annotator may be fitted on): on dev with the learned annotator,
    package-grouped folds, so no file is scored by a pipeline whose annotator saw it; else one pass, the
    shipped annotator (fitted on dev only) and every row held out."""
    everything = np.arange(len(rows))
    if split != "dev" or annotator != "learned":
        return [(everything, None)]
    from sklearn.model_selection import GroupKFold

    groups = package_groups(rows)
    return [(held, train) for train, held in GroupKFold(FOLDS).split(everything, everything, groups)]


def evaluate_settings(rows, split, args, corpus, train, grades, embed, settings, cuts) -> list[dict]:
    """Each (model, features) setting trained on the stdlib sample's annotator grades and scored on ``rows``,
    out of fold where the annotator was fitted on them (:func:`folds_of`): ROC-AUC, Spearman and, at each
    cut (a corpus keep fraction is applied per fold), high kept, low kept, precision and corpus kept."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from phiray.config import ClassifyConfig
    from phiray.data.features import structure_matrix
    from phiray.data.learned import expected_grades
    from phiray.data.learned import fit as fit_learned
    from phiray.data.scorers import build_model, quality_scores

    texts = [r["text"] for r in rows]
    s = {"rows": structure_matrix(texts), "corpus": structure_matrix(corpus), "train": structure_matrix(train)}
    cache: dict = {}

    def embedded(name, items):
        return lambda: cache.setdefault(name, embed.embed(items))

    high = np.asarray([r["high"] for r in rows], bool)
    out = {
        setting: {
            "scores": np.zeros(len(rows)),
            "kept": {c: np.zeros(len(rows), bool) for c in cuts},
            "corpus": {c: [] for c in cuts},
        }
        for setting in settings
    }
    for held, fit_rows in folds_of(rows, split, args.annotator):
        y, model = np.asarray(grades), None
        if fit_rows is not None:
            model = fit_learned([texts[i] for i in fit_rows], [rows[i]["grade"] for i in fit_rows], "cv", "cv")
            y = np.clip(np.rint(expected_grades(train, model, s["train"])), 0, 5)
        for model_name, features in settings:
            if model_name == "annotator":  # classify.model=annotator: the (fold's) annotator scores, nothing fitted
                scores = expected_grades([texts[i] for i in held], model, s["rows"][held]) / 5
                corpus_scores = expected_grades(corpus, model, s["corpus"]) / 5
            else:
                cc = ClassifyConfig(target="grade", model=model_name, features=features, n_estimators=100)
                est = build_model(cc, args.seed).fit(inputs(features, s["train"], embedded("train", train)), y)
                scores = quality_scores(est, inputs(features, s["rows"], embedded("rows", texts))[held])
                corpus_scores = quality_scores(est, inputs(features, s["corpus"], embedded("corpus", corpus)))
            res = out[(model_name, features)]
            res["scores"][held] = scores
            for c in cuts:
                t = threshold_of(c, corpus_scores)
                res["kept"][c][held] = scores >= t
                res["corpus"][c].append(float((corpus_scores >= t).mean()))
    results = []
    g = np.asarray([r["grade"] for r in rows])
    for (model_name, features), res in out.items():
        rows_out = []
        for c in cuts:
            kept = res["kept"][c]
            rows_out.append(
                {
                    "cut": c,
                    "high_kept": round(float(kept[high].mean()), 4),
                    "low_kept": round(float(kept[~high].mean()), 4),
                    "corpus_kept": round(float(np.mean(res["corpus"][c])), 4),
                    "precision": round(float(high[kept].mean()), 4) if kept.any() else None,
                }
            )
        results.append(
            {
                "model": model_name,
                "features": features,
                "embed": args.embed,
                "roc_auc": round(float(roc_auc_score(high, res["scores"])), 4),
                "spearman": round(float(spearmanr(g, res["scores"]).statistic), 4),
                "cuts": rows_out,
            }
        )
    return results


def annotator_agreement(rows, split: str) -> dict:
    """Each annotator's agreement with the labels, and its ROC-AUC as a ranker of high vs low. On dev the
    learned annotator is scored out of fold (package-grouped cross-validation), never in-sample."""
    from sklearn.metrics import roc_auc_score

    from phiray.data.code_labels import agreement
    from phiray.data.learned import expected_grades

    texts, grades = [r["text"] for r in rows], [r["grade"] for r in rows]
    high = [r["high"] for r in rows]
    learned = learned_cv(rows) if split == "dev" else expected_grades(texts)
    heuristic = [g for g, _ in annotate("heuristic", texts)]
    return {
        "heuristic": {**agreement(grades, heuristic), "roc_auc": round(float(roc_auc_score(high, heuristic)), 4)},
        f"learned{' (out of fold)' if split == 'dev' else ''}": {
            **agreement(grades, list(learned)),
            "roc_auc": round(float(roc_auc_score(high, learned)), 4),
        },
        "llm_judge": "not measured offline (no judge model here; see RESULTS.md)",
    }


def fit_annotator() -> None:
    """Refit phiray/data/labels/annotator.json on the dev split (never test) and write it."""
    from phiray.data import code_labels
    from phiray.data.learned import MODEL_PATH, VERSION
    from phiray.data.learned import fit as fit_learned

    rows, skipped = code_labels.load("dev")
    if skipped["missing"] or skipped["changed"]:
        sys.exit(f"--fit-annotator: dev files missing or changed here ({skipped}); fit where all are present")
    model = fit_learned(
        [r["text"] for r in rows],
        [r["grade"] for r in rows],
        version=VERSION,
        source=f"code_labels.json dev split ({len(rows)} files)",
    )
    path = Path(__file__).resolve().parents[1] / "phiray/data" / MODEL_PATH
    path.write_text(json.dumps(model, indent=0) + "\n")
    print(f"wrote {path}: {len(model['steps'])} grade steps on {model['n']} dev files")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["dev", "test"])
    ap.add_argument("--fit-annotator", action="store_true", help="refit the learned annotator on dev and exit")
    ap.add_argument("--annotator", default="learned", choices=["learned", "heuristic"], help="labels the train sample")
    ap.add_argument("--sweep", action="store_true", help="every model x features x cut (dev only)")
    ap.add_argument("--model", default="linear", choices=["forest", "boosting", "linear", "annotator"])
    ap.add_argument("--features", default="structure", choices=["embedding", "structure", "both"])
    ap.add_argument("--cut", default="grade:2.5", help="one cut, or several comma-separated (dev)")
    ap.add_argument("--embed", default="hashing", choices=["hashing", "minilm"])
    ap.add_argument("--corpus", type=int, default=600)
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.fit_annotator:
        return fit_annotator()
    if args.split is None:
        sys.exit("--split dev|test is required (or --fit-annotator)")
    if args.sweep and args.split != "dev":
        sys.exit("--sweep tunes: it runs on --split dev only (the test split is quoted once, with one setting)")
    from phiray.data import code_labels

    rows, skipped = code_labels.load(args.split)
    corpus, train, grades = training_corpus(args.corpus, args.train, args.seed, args.annotator)
    embed = embedder(args.embed)
    out = {
        "split": args.split,
        "files": len(rows),
        "high": int(sum(r["high"] for r in rows)),
        "skipped": {k: len(v) for k, v in skipped.items()},
        "train_positive_rate": round(float(np.mean(np.asarray(grades) >= 3)), 4),
        "annotator": args.annotator,
        "annotators": annotator_agreement(rows, args.split),
        "load_average": open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else None,
    }
    settings = (
        [(m, f) for m in ("forest", "boosting", "linear") for f in ("structure", "embedding", "both")]
        + [("annotator", "structure")]
        if args.sweep
        else [(args.model, args.features)]
    )
    out["results"] = evaluate_settings(
        rows, args.split, args, corpus, train, grades, embed, settings, CUTS if args.sweep else args.cut.split(",")
    )
    for res in out["results"]:
        print(
            f"{res['model']:9s} {res['features']:10s} auc={res['roc_auc']} rho={res['spearman']} "
            + "  ".join(f"{c['cut']}: hi {c['high_kept']:.2f} lo {c['low_kept']:.3f}" for c in res["cuts"]),
            flush=True,
        )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
