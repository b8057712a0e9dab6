"""phiray's labelled set of real code (``phiray/data/labels/code_labels.json``, guide ``GUIDE.md``).

488 Python files from the standard library and 86 installed packages, graded 0-5 by raters against the
guide, split *by package* into ``dev`` (tuning: features, models, cuts, the learned annotator) and ``test``
(quoted once per version; an old test split joins dev). Tuning code asks for ``split="dev"`` only; :func:`load` records every split it hands out
(``reads``) so a test can check that no tuning path reads ``test``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from importlib import resources
from typing import Any

HIGH_MIN_GRADE = 3  # high = grade >= 3 (GUIDE.md)
reads: list[str] = []  # every split handed out by load(), in order (audited by tests)


def roots() -> dict[str, str]:
    """Where each ``root`` of the labels lives in this environment."""
    paths = sysconfig.get_paths()
    return {"stdlib": paths["stdlib"], "site-packages": paths["purelib"]}


def rows(split: str | None = None) -> list[dict[str, Any]]:
    """The shipped label rows (no file text), of one split or all."""
    data = json.loads(resources.files("phiray.data").joinpath("labels/code_labels.json").read_text())
    return [r for r in data["labels"] if split is None or r["split"] == split]


def load(split: str) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Rows of ``split`` ('dev', 'test' or 'all') with ``text`` and ``high`` added, for the files present
    here and unchanged since labelling; and the paths ``missing`` / ``changed`` (counted, never scored)."""
    if split not in ("dev", "test", "all"):
        raise ValueError(f"code_labels: split must be dev, test or all, not {split!r}")
    reads.append(split)
    base, found, skipped = roots(), [], {"missing": [], "changed": []}
    for row in rows(None if split == "all" else split):
        try:
            text = open(os.path.join(base[row["root"]], row["path"]), encoding="utf-8").read()
        except (OSError, UnicodeDecodeError):
            skipped["missing"].append(row["path"])
            continue
        if hashlib.sha256(text.encode()).hexdigest() != row["sha256"]:
            skipped["changed"].append(row["path"])
            continue
        found.append({**row, "text": text, "high": int(row["grade"] >= HIGH_MIN_GRADE)})
    return found, skipped


def agreement(grades: list[int], predicted: list[float]) -> dict[str, float | None]:
    """Cohen's kappa (plain and quadratic-weighted, on rounded 0-5 grades) and Spearman's rho of an
    annotator's or scorer's grades against the labelled ones."""
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    truth = np.asarray(grades, int)
    guess = np.clip(np.rint(np.asarray(predicted, float)), 0, 5).astype(int)
    rho = spearmanr(truth, np.asarray(predicted, float)).statistic if len(set(truth)) > 1 else None
    return {
        "kappa": round(float(cohen_kappa_score(truth, guess)), 4),
        "kappa_quadratic": round(float(cohen_kappa_score(truth, guess, weights="quadratic")), 4),
        "spearman": None if rho is None or rho != rho else round(float(rho), 4),
        "n": int(len(truth)),
    }


def draw(packages: list[str], per_package: int, seed: int, min_lines: int = 10, max_lines: int = 2500) -> list[dict]:
    """Files to label: ``per_package`` Python files of ``min_lines``-``max_lines`` lines drawn at random
    (seeded per package, so adding a package leaves the others' draws alone) from each installed package,
    as label rows without a grade (root, path, package, sha256). A package not installed is skipped."""
    import random

    base = roots()["site-packages"]
    out = []
    for package in packages:
        top = os.path.join(base, package)
        candidates = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    text = open(path, encoding="utf-8").read()
                except (OSError, UnicodeDecodeError):
                    continue
                if min_lines <= len(text.splitlines()) <= max_lines:
                    candidates.append((os.path.relpath(path, base), text))
        for rel, text in random.Random(f"{seed}:{package}").sample(candidates, min(per_package, len(candidates))):
            sha = hashlib.sha256(text.encode()).hexdigest()
            out.append({"root": "site-packages", "path": rel, "package": package, "sha256": sha})
    return out
