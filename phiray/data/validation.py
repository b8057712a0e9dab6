"""The filter's independent validation set: stdlib files labelled by what they are, not by the annotator.

``validation_labels.json`` (beside this module) lists standard-library paths with a label and a reason:
1 = written to be read (textbook-style modules with long docstrings and doctests, the turtledemo teaching
programs), 0 = not written to teach (gencodec charmap tables, codec registration stubs, generated files and
data tables, IDLE's unit-test modules). Ambiguous files are left out. A fixed hash half is the ``test``
split: tune on ``dev``, quote ``test``.

``evaluate(scores, labels, cutoff)`` gives ROC-AUC and the share of each class kept at a cutoff;
``validate(embed_cfg, forest, cutoff, seen_ids)`` scores the files of the running interpreter's stdlib
and reports overall, per split, and on the files the classifier never saw in training (``unseen``).

``python -m phiray.data.validation RUN_DIR`` scores a finished run (its classify model and filter cutoff).
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from typing import Any, Sequence

import numpy as np

from phiray.config import EmbedConfig
from phiray.data.classifier_files import load_forest
from phiray.data.embed import make_embedder
from phiray.data.readers import doc_id, stdlib_root
from phiray.data.scorers import QualityModel, quality_scores
from phiray.rundir import RunDir

LABELS_FILE = "validation_labels.json"


def load_labels() -> list[dict[str, Any]]:
    """The shipped rows: ``{path, label, reason, split}``."""
    text = resources.files("phiray.data").joinpath(LABELS_FILE).read_text()
    return json.loads(text)["labels"]


def labelled_documents(root: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows with ``text`` and ``id`` added, for the files present under ``root`` (default: this stdlib);
    and the paths missing there (another Python version's layout), which are counted, not guessed."""
    base = str(stdlib_root() if root is None else root)
    found, missing = [], []
    for row in load_labels():
        path = os.path.join(base, row["path"])
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            missing.append(row["path"])
            continue
        found.append({**row, "text": text, "id": doc_id(text)})
    return found, missing


def evaluate(scores: Sequence[float], labels: Sequence[int], cutoff: float | None) -> dict[str, Any]:
    """ROC-AUC of ``scores`` against ``labels`` and the share of each class at ``score >= cutoff``."""
    from sklearn.metrics import roc_auc_score

    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    out: dict[str, Any] = {"n": int(len(y)), "n_high": int(y.sum()), "n_low": int(len(y) - y.sum())}
    out["roc_auc"] = round(float(roc_auc_score(y, s)), 4) if 0 < y.sum() < len(y) else None
    if cutoff is not None and len(y):
        kept = s >= cutoff
        out["cutoff"] = round(float(cutoff), 4)
        out["low_kept"] = round(float(kept[y == 0].mean()), 4) if (y == 0).any() else None
        out["high_kept"] = round(float(kept[y == 1].mean()), 4) if (y == 1).any() else None
    return out


def report(
    rows: list[dict[str, Any]], scores: np.ndarray, cutoff: float | None, seen_ids: set[str] = frozenset()
) -> dict[str, Any]:
    """Overall, per split and unseen-by-training figures, plus the low-class files kept (the audit)."""
    labels = [r["label"] for r in rows]
    out = {"all": evaluate(scores, labels, cutoff)}
    for name, pick in (
        ("dev", lambda r: r["split"] == "dev"),
        ("test", lambda r: r["split"] == "test"),
        ("unseen", lambda r: r["id"] not in seen_ids),
    ):
        idx = [i for i, r in enumerate(rows) if pick(r)]
        out[name] = evaluate(scores[idx], [labels[i] for i in idx], cutoff)
    if cutoff is not None:
        out["low_kept_paths"] = sorted(r["path"] for r, s in zip(rows, scores) if r["label"] == 0 and s >= cutoff)
        out["high_dropped_paths"] = sorted(r["path"] for r, s in zip(rows, scores) if r["label"] == 1 and s < cutoff)
    return out


def validate(
    embed_cfg, forest, cutoff: float | None, seen_ids: set[str] = frozenset(), root: str | None = None
) -> dict[str, Any]:
    """Score the validation files with ``embed_cfg``'s embedder and ``forest``; see :func:`report`."""
    rows, missing = labelled_documents(root)
    if not rows:
        return {"skipped": "no validation file found under the stdlib", "missing": len(missing)}
    texts = [r["text"] for r in rows]
    if isinstance(forest, QualityModel):
        scores = forest.scores(texts, make_embedder(embed_cfg).embed(texts) if forest.needs_embedding else None)
    else:
        scores = quality_scores(forest, make_embedder(embed_cfg).embed(texts))
    return {**report(rows, scores, cutoff, seen_ids), "missing": len(missing)}


def validate_run(location: str) -> dict[str, Any]:
    """Validation figures for a run directory with classify (and, for the cutoff, filter) done."""
    rd = RunDir(location)
    forest, meta = load_forest(rd)
    manifest = rd.read_manifest("filter")
    cutoff = manifest.metrics.get("cutoff") if manifest else None
    seen: set[str] = set()
    if rd.exists("annotate", "labels"):
        seen = set(rd.read_table("annotate", "labels", columns=["id"])["id"].to_pylist())
    return validate(EmbedConfig.model_validate(meta["embed"]), forest, cutoff, seen)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m phiray.data.validation RUN_DIR")
    print(json.dumps(validate_run(sys.argv[1]), indent=2))
