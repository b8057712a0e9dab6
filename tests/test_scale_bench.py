"""benchmarks/scale.py's own logic: the planted truth, the recall it reports and the embedder choice."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("phiray_scale_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_corpus_plants_copies_of_unplanted_sources(scale, tmp_path):
    truth = scale.build_corpus(tmp_path, 300, seed=3)
    files = sorted((tmp_path / "code").rglob("*.py"))
    assert len(files) == 300 and len(truth["planted"]) == 5
    copies = set(truth["near"]) | set(truth["exact"])
    assert copies and set(truth["source_of"]) == copies
    assert not set(truth["source_of"].values()) & copies  # a copy is never copied again
    for copy in truth["exact"]:  # whitespace-only copies: equal once whitespace runs are collapsed
        assert Path(copy).read_text().split() == Path(truth["source_of"][copy]).read_text().split()


def test_recall_lets_a_group_keep_any_one_member(scale):
    truth = {"near": ["c1", "c2"], "exact": ["e1"], "planted": [], "source_of": {"c1": "s", "c2": "s", "e1": "t"}}
    keep_sources = scale.agreement({"c1", "c2", "e1"}, truth)
    keep_a_copy = scale.agreement({"s", "c2", "t"}, truth)
    assert keep_sources == {"recall": 1.0, "copy_recall": 1.0, "removed": 3, "unplanted_removed": 0}
    assert keep_a_copy["recall"] == 1.0 and keep_a_copy["copy_recall"] == pytest.approx(1 / 3, abs=1e-4)
    whole_group = scale.agreement({"s", "c1", "c2", "x"}, truth)  # all three of s's group gone, t's kept twice
    assert whole_group["recall"] == pytest.approx(2 / 3, abs=1e-4) and whole_group["unplanted_removed"] == 1


def test_filter_embedder_defaults_to_hashing_from_100k(scale):
    assert scale.filter_embedder("auto", 99_999) == "sentence-transformers"
    assert scale.filter_embedder("auto", 100_000) == "hashing"
    assert scale.filter_embedder("sentence-transformers", 300_000) == "sentence-transformers"
