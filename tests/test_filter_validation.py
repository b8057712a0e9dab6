"""The independent validation set (phiray/data/validation_labels.json) and its scoring."""

from __future__ import annotations

import numpy as np
import pytest

from phiray.config import EmbedConfig
from phiray.data import validation
from phiray.data.readers import stdlib_root


def test_labels_are_explicit_documented_and_present():
    rows = validation.load_labels()
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) >= 200
    assert {r["label"] for r in rows} == {0, 1} and {r["split"] for r in rows} == {"dev", "test"}
    assert all(len(r["reason"]) > 20 for r in rows)  # every label says why
    for split in ("dev", "test"):
        labels = [r["label"] for r in rows if r["split"] == split]
        assert 0.25 < sum(labels) / len(labels) < 0.6  # both classes in both halves
    found, missing = validation.labelled_documents()
    assert len(missing) <= 0.1 * len(rows), missing  # this interpreter's stdlib has (nearly) all of them
    assert all(r["text"] and len(r["id"]) == 64 for r in found)


def test_evaluate_auc_and_share_kept():
    out = validation.evaluate([0.9, 0.8, 0.3, 0.6, 0.1], [1, 1, 0, 0, 0], cutoff=0.5)
    assert out["roc_auc"] == 1.0 and out["n_low"] == 3
    assert out["low_kept"] == pytest.approx(1 / 3, abs=1e-4) and out["high_kept"] == 1.0
    assert validation.evaluate([0.2, 0.4], [0, 0], cutoff=None)["roc_auc"] is None  # one class: no AUC


def test_validate_separates_the_classes_with_a_forest_trained_on_dev(tmp_path):
    """The labels are learnable from content: a forest fitted on the dev half ranks the test half."""
    from sklearn.ensemble import RandomForestClassifier

    from phiray.data.embed import make_embedder

    rows, _ = validation.labelled_documents()
    dev = [r for r in rows if r["split"] == "dev"]
    cfg = EmbedConfig(kind="hashing")
    forest = RandomForestClassifier(n_estimators=50, random_state=0).fit(
        make_embedder(cfg).embed([r["text"] for r in dev]), [r["label"] for r in dev]
    )
    out = validation.validate(cfg, forest, cutoff=0.5, seen_ids={r["id"] for r in dev})
    assert out["missing"] <= 23
    assert out["unseen"]["n"] == out["test"]["n"]  # unseen = the test half here
    assert out["test"]["roc_auc"] > 0.8
    assert set(out["low_kept_paths"]) <= {r["path"] for r in rows if r["label"] == 0}
    assert np.isclose(out["all"]["low_kept"], len(out["low_kept_paths"]) / out["all"]["n_low"], atol=1e-3)


def test_validate_reports_a_missing_stdlib(tmp_path):
    out = validation.validate(EmbedConfig(kind="hashing"), forest=None, cutoff=0.5, root=str(tmp_path))
    assert out["skipped"] and out["missing"] == len(validation.load_labels())
    assert stdlib_root().is_dir()


def test_validate_run_reads_a_run_directory(tmp_path):
    """``python -m phiray.data.validation RUN``: the run's forest, embedder and cut; its training ids are 'seen'."""
    import json
    import subprocess
    import sys

    import joblib
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.ensemble import RandomForestClassifier

    from phiray.data.embed import make_embedder
    from phiray.rundir import Manifest, RunDir

    rows, _ = validation.labelled_documents()
    train = [r for r in rows if r["split"] == "dev"]
    cfg = EmbedConfig(kind="hashing")
    forest = RandomForestClassifier(n_estimators=30, random_state=0).fit(
        make_embedder(cfg).embed([r["text"] for r in train]), [r["label"] for r in train]
    )
    rd = RunDir(tmp_path / "run")
    model_dir = rd.makedirs("classify", "model")
    joblib.dump(forest, f"{model_dir}/forest.joblib")
    with open(f"{model_dir}/meta.json", "w") as fh:
        json.dump({"embed": cfg.model_dump(mode="json"), "metrics": {}}, fh)
    rd.write_manifest(Manifest(stage="filter", metrics={"cutoff": 0.5}))
    labels_dir = rd.makedirs("annotate", "labels")
    pq.write_table(pa.table({"id": [r["id"] for r in train]}), f"{labels_dir}/part-0.parquet")
    out = json.loads(
        subprocess.run(
            [sys.executable, "-m", "phiray.data.validation", str(rd.path())], capture_output=True, text=True, check=True
        ).stdout
    )
    assert out["all"]["cutoff"] == 0.5 and out["unseen"]["n"] == out["test"]["n"]
    assert out["test"]["roc_auc"] > 0.8
