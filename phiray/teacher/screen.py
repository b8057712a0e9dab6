"""Screening synthetic samples before they are written: benchmark decontamination and split leaks.

Every sample that trains or selects a model (textbooks, train exercises, validation exercises) and the
test split itself are checked with the decontaminate stage's n-gram rule (:mod:`phiray.data.ngrams`):

- a sample sharing an n-gram with a HumanEval/MBPP prompt + solution is rejected (``contaminated``);
- a textbook, train or validation exercise sharing an n-gram with a test-split (held-out family)
  solution is rejected (``test_overlap``): the synthetic data is cheap, the test split is not;
- a test exercise whose solution shares an n-gram with the corpus (``decontaminate/documents``: what the
  code and unfiltered token sources and the seed snippets come from) is rejected (``corpus_overlap``):
  the corpus trains both phiray's model and the control, so the test exercise goes, not the corpus.

So no test-split solution shares an n-gram with any source that trains a model.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pandas as pd

from phiray.data import docio, ngrams

if TYPE_CHECKING:
    import ray.data

    from phiray.rundir import RunDir

TRAINING_OUTPUTS = ("textbooks", "exercises", "validation")
TEST_OUTPUT = "heldout"
CORPUS = ("decontaminate", "documents")


def test_index(assigned: "ray.data.Dataset", n: int) -> dict[int, tuple[str, ...]]:
    """{n-gram key: every test exercise whose solution holds it} (instances of one family share n-grams,
    and a corpus document matching several must take them all out); only the test rows' keys and
    solutions reach the driver."""
    from ray.data.expressions import col

    rows = assigned.filter(expr=col("output") == TEST_OUTPUT).select_columns(["key", "solution"]).take_all()
    index: dict[int, tuple[str, ...]] = {}
    for row in rows:
        for gram in ngrams.ngram_keys(row["solution"] or "", n):
            index[gram] = (*index.get(gram, ()), row["key"])
    return index


def test_hits(text: str, index: dict[int, tuple[str, ...]], n: int) -> list[str]:
    """The test exercises sharing an n-gram with ``text``, sorted."""
    return sorted({key for keys in ngrams.matches(text, index, n) for key in keys})  # type: ignore[arg-type]


def corpus_overlaps(rd: "RunDir", index: dict[int, tuple[str, ...]], n: int) -> tuple[set[str], dict[str, Any]]:
    """Test exercise keys whose solution shares an n-gram with a corpus document, and the check's figures."""
    if not rd.exists(*CORPUS):
        return set(), {"source": "none", "documents": 0, "matched": 0}
    if not index:
        return set(), {"source": "/".join(CORPUS), "documents": 0, "matched": 0}

    def _match(table):
        import pyarrow as pa

        found = [",".join(test_hits(t or "", index, n)) for t in table["text"].to_pylist()]
        return pa.table({"matched": pa.array(found, pa.string())})

    docs = docio.read_docs(rd, *CORPUS, spread=True).select_columns(["text"])
    matched = docs.map_batches(_match, batch_format="pyarrow", batch_size=64)
    keys: set[str] = set()
    documents = hits = 0
    for batch in matched.iter_batches(batch_format="numpy", batch_size=4096):
        documents += len(batch["matched"])
        for found in batch["matched"]:
            if found:
                hits += 1
                keys.update(found.split(","))
    return keys, {"source": "/".join(CORPUS), "documents": documents, "matched": hits}


def screen(
    batch: pd.DataFrame, bench: dict[int, str], test: dict[int, tuple[str, ...]], corpus_hits: set[str], n: int
) -> pd.DataFrame:
    """Re-assign contaminated or leaking rows to ``rejected`` (``reason``, ``contaminated_by``); keep the
    output each row was screened as in ``screened_as`` (the manifest counts per source)."""
    batch = batch.copy()
    outputs, reasons = list(batch["output"]), list(batch["reason"])
    found: list[str] = []
    for i, (out, key, text, solution) in enumerate(zip(outputs, batch["key"], batch["text"], batch["solution"])):
        hits = ""
        if out in TRAINING_OUTPUTS or out == TEST_OUTPUT:
            hits = ",".join(ngrams.matches(text or "", bench, n))
            if hits:
                outputs[i], reasons[i] = "rejected", "contaminated"
            elif out in TRAINING_OUTPUTS and (leak := test_hits(text or "", test, n)):
                outputs[i], reasons[i], hits = "rejected", "test_overlap", ",".join(leak)
            elif out == TEST_OUTPUT and key in corpus_hits:
                outputs[i], reasons[i], hits = "rejected", "corpus_overlap", "corpus"
        found.append(hits)
    batch["screened_as"] = batch["output"]
    batch["output"], batch["reason"], batch["contaminated_by"] = outputs, reasons, found
    return batch


class ScreenTally:
    """Per source (the output a row was screened as): rows checked, rejected by reason, matched tasks."""

    def __init__(self) -> None:
        self.checked: Counter[str] = Counter()
        self.rejected: dict[str, Counter[str]] = {}
        self.tasks: dict[str, Counter[str]] = {}

    def add(self, screened_as: str, output: str, reason: str, contaminated_by: str) -> None:
        if screened_as not in (*TRAINING_OUTPUTS, TEST_OUTPUT):
            return
        self.checked[screened_as] += 1
        if output == "rejected" and reason in ("contaminated", "test_overlap", "corpus_overlap"):
            self.rejected.setdefault(screened_as, Counter())[reason] += 1
            if reason == "contaminated":
                self.tasks.setdefault(screened_as, Counter()).update(contaminated_by.split(","))

    def report(self) -> dict[str, dict[str, Any]]:
        return {
            source: {
                "checked": self.checked[source],
                "contaminated": self.rejected.get(source, Counter())["contaminated"],
                "test_overlap": self.rejected.get(source, Counter())["test_overlap"],
                "corpus_overlap": self.rejected.get(source, Counter())["corpus_overlap"],
                "matched_tasks": dict(self.tasks.get(source, Counter())),
            }
            for source in (*TRAINING_OUTPUTS, TEST_OUTPUT)
        }
