"""The synthesize stage offline (procedural teacher): outputs follow the data contract, every kept
exercise passes its tests in the sandbox, held-out exercises are family-disjoint, seed snippets."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from contract_checks import contract_problems
from synthesize_fixtures import REPO, run_synthesize, tiny_cfg

from phiray.config import SandboxConfig
from phiray.rundir import RunDir
from phiray.schemas import SYNTHESIZE_EXERCISES, SYNTHESIZE_TEXTBOOKS

EXERCISE_COLUMNS = set(SYNTHESIZE_EXERCISES.names)
TEXTBOOK_COLUMNS = set(SYNTHESIZE_TEXTBOOKS.names)


def _read(run_dir: Path, name: str) -> list[dict]:
    """The stage's Parquet output as rows (plain pyarrow: checking files needs no Ray job)."""
    import pyarrow.parquet as pq

    return pq.read_table(run_dir / "synthesize" / name).to_pylist()


def _check_outputs(run_dir: Path) -> dict:
    from phiray.sandbox import Sandbox

    textbooks, train, val, held = (_read(run_dir, n) for n in ("textbooks", "exercises", "validation", "heldout"))
    assert textbooks and train and val and held
    assert set(textbooks[0]) == TEXTBOOK_COLUMNS and set(train[0]) == EXERCISE_COLUMNS
    assert all(r["kind"] == "textbook" and "```python" in r["text"] for r in textbooks)
    exercises = train + val + held
    assert all(r["verified"] and r["text"] == r["prompt"] + r["solution"] for r in exercises)
    assert len({r["id"] for r in exercises + textbooks}) == len(exercises) + len(textbooks)
    assert not {r["concept"] for r in train} & {r["concept"] for r in held}
    assert not {r["prompt"] for r in train + val} & {r["prompt"] for r in held}
    assert not {r["concept"] for r in val} & {r["concept"] for r in held} and not {r["id"] for r in train} & {
        r["id"] for r in val
    }
    # Independently of the stage's own verdicts: every kept exercise passes its tests in the sandbox.
    verdicts = Sandbox(SandboxConfig(workers=2)).check_many(
        [{"code": r["prompt"] + r["solution"], "tests": r["tests"], "entry_point": r["entry_point"]} for r in exercises]
    )
    assert all(v.passed for v in verdicts), [v.detail for v in verdicts if not v.passed][:3]
    return {"textbooks": textbooks, "train": train, "validation": val, "heldout": held}


def _write_documents(run_dir: Path, stage: str, extra: list[str] = ()) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = run_dir / stage / "documents"
    out.mkdir(parents=True)
    texts = ["def area(r):\n    return 3.14159 * r * r\n", "import os\n\nprint(os.getcwd())\n", *extra]
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts}), out / "part-0.parquet")


def test_offline_synthesize_small(tmp_path: Path, ray_session):
    _write_documents(tmp_path, "decontaminate")  # no filter/documents: falls back, and says so
    manifest = run_synthesize(tmp_path, tiny_cfg("synthesize.n_textbooks=20", "synthesize.n_exercises=60"))
    out = _check_outputs(tmp_path)
    assert not contract_problems(RunDir(tmp_path), ["synthesize"])
    m = manifest.metrics
    assert (
        m["seed_snippets"]["source"] == "decontaminate/documents" and m["seed_snippets"]["prompts_with_snippet"] == 20
    )
    assert m["verification"]["checked"] == m["verification"]["passed"] > 0
    assert m["requests"] == 80 and m["cache_hits"] == 0 and m["estimated_cost_usd"] == 0.0
    div = m["diversity"]["exercise"]
    assert 0 <= div["duplicate_rate"] < 0.5 and 0 < div["distinct_4gram_ratio"] <= 1 and div["cells"] > 10
    assert manifest.rows["heldout"] == len(out["heldout"]) and set(m["heldout_families"]) >= {
        r["concept"] for r in out["heldout"]
    }
    assert manifest.rows["planned"] == sum(
        manifest.rows[k] for k in ("textbooks", "exercises", "validation", "heldout", "rejected")
    )


def _planned_test_exercise(cfg) -> dict:
    """The first test-split exercise the stage will generate with ``cfg`` whose solution has 13-grams."""
    from phiray.data import ngrams
    from phiray.teacher import make_teacher
    from phiray.teacher.plan import plan_rows, request_for
    from phiray.teacher.prompts import parse_exercise

    syn = cfg.synthesize
    rows = plan_rows(
        syn.n_textbooks,
        syn.n_exercises,
        syn.audiences,
        syn.styles,
        cfg.run.seed,
        syn.heldout_fraction,
        [],
        0,
        syn.validation_fraction,
    )
    teacher = make_teacher(cfg.teacher)
    for row in (r for r in rows if r["split"] == "heldout"):
        exercise = parse_exercise(teacher.complete([request_for(row)])[0].text)[0]
        if ngrams.ngram_keys(exercise["solution"], 13):
            return exercise
    raise AssertionError("no test-split exercise with a 13-gram in the plan")


def test_test_split_shares_no_13gram_with_any_training_source(tmp_path: Path, ray_session):
    """Acceptance: no test-split solution shares a 13-gram (the decontaminate rule) with a source that trains
    a model: textbooks, train and validation exercises, and the corpus (decontaminate/documents, which the
    code and unfiltered token sources are packed from). A corpus document planted with one test solution
    takes that exercise out of the test split; the manifest counts the screening per source."""
    import pyarrow.parquet as pq

    from phiray.data import ngrams

    cfg = tiny_cfg("synthesize.n_textbooks=30", "synthesize.n_exercises=120", "synthesize.seed_snippet_chars=0")
    planted = _planned_test_exercise(cfg)
    _write_documents(
        tmp_path, "decontaminate", extra=["# copied from a tutorial\n" + planted["prompt"] + planted["solution"]]
    )
    manifest = run_synthesize(tmp_path, cfg)
    out = _check_outputs(tmp_path)
    rejected = _read(tmp_path, "rejected")
    assert any(
        r["reason"] == "corpus_overlap" and r["text"] == planted["prompt"] + planted["solution"] for r in rejected
    )
    training = [r["text"] for r in out["textbooks"] + out["train"] + out["validation"]]
    training += pq.read_table(tmp_path / "decontaminate" / "documents").column("text").to_pylist()
    index = ngrams.build_index(((r["id"], r["solution"]) for r in out["heldout"]), 13)
    assert index, "the test split has no 13-grams: the check would prove nothing"
    assert not [t[:80] for t in training if ngrams.matches(t, index, 13)]
    screen = manifest.metrics["decontamination"]
    assert (
        screen["ngram"] == 13
        and screen["benchmark_tasks"]["humaneval"] == 164
        and screen["benchmark_tasks"]["mbpp"] > 900
    )
    assert screen["corpus"] == {"source": "decontaminate/documents", "documents": 3, "matched": 1}
    assert all(r["concept"] for r in out["textbooks"])  # each textbook teaches a train family
    assert not {r["concept"] for r in out["textbooks"]} & set(manifest.metrics["heldout_families"])
    assert screen["sources"]["heldout"]["corpus_overlap"] >= 1  # the planted one (and its family's look-alikes)
    for source in ("textbooks", "exercises", "validation", "heldout"):
        assert screen["sources"][source]["checked"] >= 1 and screen["sources"][source]["contaminated"] == 0


def test_screen_rejects_benchmark_text_and_test_split_leaks():
    """The screen on one batch: HumanEval text in a textbook is contaminated (with the task id), a train
    exercise holding a test solution is a test_overlap, a test exercise in the corpus a corpus_overlap."""
    import pandas as pd

    from phiray.data import ngrams
    from phiray.teacher.screen import ScreenTally, screen

    problem = dict(ngrams.humaneval_tasks())["HumanEval/0"]
    secret = "    seen = {}\n    for index, value in enumerate(items):\n        seen[value] = seen.get(value, 0) + index * 3\n    return sorted(seen.items())\n"
    test = {gram: ("exercise-9",) for gram in ngrams.ngram_keys(secret, 13)}
    batch = pd.DataFrame(
        {
            "key": ["textbook-1", "exercise-1", "exercise-9", "exercise-2"],
            "output": ["textbooks", "exercises", "heldout", "validation"],
            "reason": [""] * 4,
            "solution": ["", secret, secret, "    return 1\n"],
            "text": [
                "Read this:\n" + problem,
                "def f(items):\n" + secret,
                "def g(items):\n" + secret,
                "def h():\n    return 1\n",
            ],
        }
    )
    out = screen(batch, ngrams.build_index(ngrams.humaneval_tasks(), 13), test, {"exercise-9"}, 13)
    assert list(out["output"]) == ["rejected", "rejected", "rejected", "validation"]
    assert list(out["reason"]) == ["contaminated", "test_overlap", "corpus_overlap", ""]
    assert list(out["contaminated_by"]) == ["HumanEval/0", "exercise-9", "corpus", ""]
    tally = ScreenTally()
    for row in out.itertuples():
        tally.add(row.screened_as, row.output, row.reason, row.contaminated_by)
    report = tally.report()
    assert report["textbooks"] == {
        "checked": 1,
        "contaminated": 1,
        "test_overlap": 0,
        "corpus_overlap": 0,
        "matched_tasks": {"HumanEval/0": 1},
    }
    assert report["exercises"]["test_overlap"] == 1 and report["heldout"]["corpus_overlap"] == 1
    assert report["validation"] == {
        "checked": 1,
        "contaminated": 0,
        "test_overlap": 0,
        "corpus_overlap": 0,
        "matched_tasks": {},
    }


def test_snippets_prefer_the_filtered_corpus(tmp_path: Path, ray_session):
    _write_documents(tmp_path, "filter")
    _write_documents(tmp_path, "decontaminate")
    cfg = tiny_cfg("synthesize.n_textbooks=4", "synthesize.n_exercises=0", "synthesize.verify=false")
    manifest = run_synthesize(tmp_path, cfg)
    assert manifest.metrics["seed_snippets"]["source"] == "filter/documents"
    none_dir = tmp_path / "none"
    manifest = run_synthesize(none_dir, cfg)
    assert manifest.metrics["seed_snippets"] == {"source": "none", "available": 0, "prompts_with_snippet": 0}
    assert manifest.rows["exercises"] == 0 and (none_dir / "synthesize" / "exercises").exists()


def _write_files(run_dir: Path, stage: str, files: list[list[str]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = run_dir / stage / "documents"
    out.mkdir(parents=True)
    for i, texts in enumerate(files):
        pq.write_table(pa.table({"text": texts}), out / f"part-{i}.parquet")


def test_seed_snippets_are_the_same_whatever_the_file_layout(tmp_path: Path, ray_session):
    """A rerun (another node, other block order) must plan the same prompts: the snippets are the
    ``limit`` smallest by content hash, in that order, not whichever blocks a ``limit()`` reads first."""
    import hashlib

    from phiray.rundir import RunDir
    from phiray.stages.synthesize import load_snippets

    texts = [f"def f{i}(x):\n    return x + {i}\n" for i in range(40)]
    expected = sorted(texts, key=lambda t: hashlib.blake2b(t.encode(), digest_size=16).hexdigest())[:7]
    layouts = {
        "a": [texts[:13], texts[13:29], ["", *texts[29:]]],
        "b": [list(reversed(texts[20:])), [""], texts[:20][::3], [t for i, t in enumerate(texts[:20]) if i % 3]],
    }
    got = {}
    for name, files in layouts.items():
        _write_files(tmp_path / name, "filter", files)
        got[name] = load_snippets(RunDir(str(tmp_path / name)), limit=7)
    assert got["a"] == got["b"] == (expected, "filter/documents")
    everything, _ = load_snippets(RunDir(str(tmp_path / "a")), limit=100)
    assert sorted(everything) == sorted(texts)  # every non-empty text once, none when fewer than the limit


@pytest.mark.slow
def test_tiny_preset_cli_offline(tmp_path: Path):
    """Acceptance: `phiray synthesize` on the tiny preset, offline; 100% of kept exercises pass."""
    t0 = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "phiray",
            "synthesize",
            "--run-dir",
            str(tmp_path),
            "--preset",
            "tiny",
            "run.stages=[synthesize]",
            "run.num_cpus=2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wall = time.time() - t0
    out = _check_outputs(tmp_path)
    assert len(out["textbooks"]) >= 250 and len(out["train"]) >= 400
    assert wall < 600, f"tiny synthesize took {wall:.0f}s"
