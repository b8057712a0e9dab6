"""Units of the filtering blocks: readers, annotators (heuristic + LLM over real HTTP), embedders, cut-offs,
and near-duplicates across two real Python versions' standard libraries."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from phiray.config import EmbedConfig, load_config  # noqa: E402
from phiray.data import annotators, minhash, readers  # noqa: E402
from phiray.data.cuts import cutoff  # noqa: E402
from phiray.data.embed import make_embedder, minilm_path  # noqa: E402

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def test_read_text_file_reasons(tmp_path):
    cases = {"ok.py": b"x = 1\n", "bin.py": b"ab\x00cd", "bad.py": b"caf\xe9\n", "empty.py": b"", "big.py": b"#" * 2000}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    got = {n: readers.read_text_file(str(tmp_path / n), "t", 1, 1000)["reason"] for n in cases}
    assert got == {"ok.py": "", "bin.py": "binary", "bad.py": "non_utf8", "empty.py": "empty", "big.py": "oversized"}
    assert readers.read_text_file(str(tmp_path / "missing.py"), "t", 1, 1000)["reason"] == "unreadable"


def test_heuristic_prefers_documented_code():
    documented = (STDLIB / "textwrap.py").read_text()
    generated = "# This file is auto-generated. DO NOT EDIT.\n" + "\n".join(f"T{i} = {i * 7}" for i in range(300))
    terse = "def f(a,b):\n  x=a\n  for i in b:\n   if i:\n    while x:\n     if x>1:\n      x=x-1\n  return x\n"
    high, why = annotators.heuristic_score(documented)
    assert high >= 4 and "docstrings" in why
    assert annotators.heuristic_score(generated)[0] == 0
    assert annotators.heuristic_score(terse)[0] < high
    assert annotators.heuristic_score("def broken(:\n")[0] <= 2


@pytest.mark.parametrize(
    "answer,score",
    [
        ("Score: 4\nReason: clear", 4),
        ("**Score:** 2/5 - boilerplate", 2),
        ("I rate this 3/5.", 3),
        ("5", 5),
        ("Score: 7", None),
        ("no idea", None),
    ],
)
def test_parse_llm_score(answer, score):
    assert annotators.parse_llm_score(answer)[0] == score


def test_llm_annotator_over_http_is_cached(ray_session, tmp_path):
    from fake_openai import FakeOpenAI

    from phiray.stages.annotate import _llm_label

    def judge(body):
        code = body["messages"][-1]["content"]
        assert "educational value for a student whose goal is to learn basic coding concepts" in code
        return "Score: 4\nReason: clear and documented." if '"""' in code else "Rating: hmm"

    rows = [{"id": f"d{i}", "text": f'def f{i}():\n    """Doc."""\n' if i % 2 else f"x{i} = {i}\n"} for i in range(6)]
    with FakeOpenAI(responder=judge, rate_limit_rate=0.2, seed=1) as server:
        cfg = load_config(
            "tiny",
            overrides=[
                "teacher.kind=openai",
                f"teacher.base_url={server.base_url}",
                "teacher.backoff_base_s=0.01",
                "annotate.annotator=llm",
                "classify.model=forest",
            ],
        )
        good, bad, stats = _llm_label(rows, cfg, str(tmp_path / "cache"))
        assert [r["score"] for r in good] == [4, 4, 4] and len(bad) == 3
        assert all(r["annotator"] == "llm" and r["model"] == cfg.teacher.model for r in good)
        sent = len([e for e in server.log if e.get("status") == 200])
        good2, _, stats2 = _llm_label(rows, cfg, str(tmp_path / "cache"))
        assert good2 == good
        assert len([e for e in server.log if e.get("status") == 200]) == sent  # all from the on-disk cache
        assert stats2["cache_hits"] == 6


def test_minilm_embedder_offline():
    assert (Path(minilm_path()) / "config.json").exists()
    emb = make_embedder(EmbedConfig(kind="sentence-transformers", max_length=32, batch_size=4))
    x = emb.embed(["def add(a, b): return a + b", "def plus(x, y): return x + y", "The cat sat on the mat."])
    assert x.shape == (3, 384) and x.dtype == np.float32
    cos = x @ x.T / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(x, axis=1))
    assert cos[0, 1] > cos[0, 2]


def test_hf_embedder_loads_a_phiray_checkpoint(tmp_path):
    from serve_fixtures import build_tiny_checkpoint

    ckpt = build_tiny_checkpoint(tmp_path / "ckpt")
    emb = make_embedder(EmbedConfig(kind="phiray", model=str(ckpt), max_length=16, batch_size=2))
    x = emb.embed(["def add(a, b):", "import os", "x = 1"])
    assert x.shape == (3, 32) and np.isfinite(x).all()
    assert np.allclose(emb.embed(["import os"])[0], x[1], atol=1e-5)  # padding does not change a row
    h = make_embedder(EmbedConfig(kind="hashing")).embed(["a b", ""])
    assert h.shape == (2, 1024)


def test_cutoff_threshold_and_top_fraction():
    scores = np.array([0.1, 0.9, 0.5, 0.7])
    assert cutoff(scores, 0.6, None) == 0.6
    assert cutoff(scores, None, 0.5) == 0.7 and (scores >= cutoff(scores, None, 0.5)).sum() == 2


def _other_stdlib() -> Path | None:
    """Another Python's standard library installed beside this one (pyenv, /usr/lib), if any."""
    here = STDLIB.resolve()
    candidates = list(here.parent.parent.parent.parent.glob("*/lib/python3.*")) + list(
        Path("/usr/lib").glob("python3.*")
    )
    others = [c for c in candidates if c.resolve() != here and (c / "textwrap.py").exists()]
    return sorted(others)[0] if others else None


def test_two_python_versions_are_near_duplicates():
    other = _other_stdlib()
    if other is None:
        pytest.skip("no second Python standard library on this machine")
    pairs = [(STDLIB / n).read_text() for n in ("textwrap.py", "fnmatch.py", "colorsys.py")]
    olds = [(other / n).read_text() for n in ("textwrap.py", "fnmatch.py", "colorsys.py")]
    texts = pairs + olds
    keep = minhash.dedup_texts(texts, threshold=0.7, num_perm=128)
    sims = [minhash.similarity(minhash.signature(a), minhash.signature(b)) for a, b in zip(pairs, olds)]
    assert keep == [0, 1, 2], (other, sims)


def test_cut_by_target_precision_and_what_it_implies():
    from phiray.data.cuts import implied, precision_cutoff
    from phiray.stages.filter import select

    proba = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2])
    labels = np.array([1, 1, 0, 1, 1, 0, 0, 0])
    assert precision_cutoff(proba, labels, 1.0) == 0.9  # the two best are both positive
    assert precision_cutoff(proba, labels, 0.75) == 0.6  # 4 of the 5 best: most recall at >= 0.75
    assert precision_cutoff(proba, labels, 0.99) == 0.9
    at = implied(proba, labels, 0.6)
    assert at == {"precision": 0.8, "recall": 1.0, "kept_fraction": 0.625, "n": 8}
    ties = np.array([0.9, 0.5, 0.5, 0.5])
    assert precision_cutoff(ties, np.array([1, 1, 0, 0]), 0.6) == 0.9  # a cut keeps every tie
    cfg = load_config("tiny", overrides=["filter.target_precision=0.75", "filter.keep_fraction=null"])
    cut, how, at_cut = select(np.linspace(0, 1, 11), cfg, (proba, labels))
    assert (cut, how, at_cut["precision"]) == (0.6, "target_precision=0.75", 0.8)
    cfg = load_config("tiny", overrides=["filter.keep_fraction=0.2"])
    cut, how, at_cut = select(np.linspace(0, 1, 11), cfg, (proba, labels))
    assert cut == 0.9 and how == "keep_fraction=0.2" and at_cut["recall"] == 0.5
    with pytest.raises(ValueError, match="no positives"):
        precision_cutoff(proba, np.zeros(8, np.int64), 0.9)


def test_grade_forest_ranks_by_predicted_grade():
    """classify.target=grade: a regressor of the 0-5 grade, scored as grade / 5 and evaluated against the label."""
    import joblib

    from phiray.data.scorers import quality_scores
    from phiray.stages.classify import fit_and_evaluate

    rng = np.random.default_rng(0)
    grades = [int(g) for g in rng.integers(0, 6, 60)]
    texts = [" ".join(["lesson"] * (3 * g + 1) + ["glue"] * (15 - 2 * g) + [str(i)]) for i, g in enumerate(grades)]
    for target in ("label", "grade"):
        cfg = load_config(
            "tiny",
            overrides=[
                "embed.kind=hashing",
                "classify.model=forest",
                "classify.features=embedding",
                "classify.n_estimators=30",
                f"classify.target={target}",
                "filter.keep_fraction=null",
            ],
        )
        model_bytes, metrics, _ = fit_and_evaluate(texts, grades, cfg)
        model = joblib.load(__import__("io").BytesIO(model_bytes))
        forest = model.estimator
        assert hasattr(forest, "predict_proba") == (target == "label")
        assert set(metrics["heldout_labels"]) == {0, 1} and metrics["roc_auc"] > 0.9
        scores = quality_scores(forest, make_embedder(cfg.embed).embed(texts))
        assert np.allclose(scores, model.scores(texts, make_embedder(cfg.embed).embed(texts)))
        if target == "grade":  # a regressor's own figures, and the binary ones at the cut filter uses
            assert {"spearman", "mae", "cut", "cut_from"} <= set(metrics) and metrics["spearman"] > 0.5
            assert metrics["cut_from"].startswith("threshold=")
        assert ((0 <= scores) & (scores <= 1)).all()
        if target == "grade":  # ordered by how good, not only by which side of the cut
            by_grade = [float(np.mean([s for s, g in zip(scores, grades) if g == k])) for k in range(6)]
            assert by_grade == sorted(by_grade) and by_grade[5] - by_grade[3] > 0.1, by_grade
