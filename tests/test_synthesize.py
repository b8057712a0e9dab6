"""The synthesize stage offline (procedural teacher): outputs follow the data contract, every kept
exercise passes its tests in the sandbox, held-out exercises are family-disjoint, seed snippets."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from phiray.config import SandboxConfig
from synthesize_fixtures import REPO, run_synthesize, tiny_cfg

EXERCISE_COLUMNS = {"id", "kind", "topic", "concept", "audience", "style", "seed", "difficulty", "prompt",
                    "solution", "tests", "entry_point", "signature", "docstring", "text", "verified"}
TEXTBOOK_COLUMNS = {"id", "kind", "topic", "subtopic", "audience", "style", "seed", "text"}


def _read(run_dir: Path, name: str) -> list[dict]:
    """The stage's Parquet output as rows (plain pyarrow: checking files needs no Ray job)."""
    import pyarrow.parquet as pq

    return pq.read_table(run_dir / "synthesize" / name).to_pylist()


def _check_outputs(run_dir: Path) -> dict:
    from phiray.sandbox import Sandbox

    textbooks, train, held = (_read(run_dir, n) for n in ("textbooks", "exercises", "heldout"))
    assert textbooks and train and held
    assert set(textbooks[0]) == TEXTBOOK_COLUMNS and set(train[0]) == EXERCISE_COLUMNS
    assert all(r["kind"] == "textbook" and "```python" in r["text"] for r in textbooks)
    exercises = train + held
    assert all(r["verified"] and r["text"] == r["prompt"] + r["solution"] for r in exercises)
    assert len({r["id"] for r in exercises + textbooks}) == len(exercises) + len(textbooks)
    assert not {r["concept"] for r in train} & {r["concept"] for r in held}
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in held}
    # Independently of the stage's own verdicts: every kept exercise passes its tests in the sandbox.
    verdicts = Sandbox(SandboxConfig(workers=2)).check_many(
        [{"code": r["prompt"] + r["solution"], "tests": r["tests"], "entry_point": r["entry_point"]} for r in exercises])
    assert all(v.passed for v in verdicts), [v.detail for v in verdicts if not v.passed][:3]
    return {"textbooks": textbooks, "train": train, "heldout": held}


def _write_documents(run_dir: Path, stage: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = run_dir / stage / "documents"
    out.mkdir(parents=True)
    texts = ["def area(r):\n    return 3.14159 * r * r\n", "import os\n\nprint(os.getcwd())\n"]
    pq.write_table(pa.table({"id": ["a", "b"], "text": texts}), out / "part-0.parquet")


def test_offline_synthesize_small(tmp_path: Path, ray_session):
    _write_documents(tmp_path, "decontaminate")  # no filter/documents: falls back, and says so
    manifest = run_synthesize(tmp_path, tiny_cfg("synthesize.n_textbooks=20", "synthesize.n_exercises=60"))
    out = _check_outputs(tmp_path)
    m = manifest.metrics
    assert m["seed_snippets"]["source"] == "decontaminate/documents" and m["seed_snippets"]["prompts_with_snippet"] == 20
    assert m["verification"]["checked"] == m["verification"]["passed"] > 0
    assert m["requests"] == 80 and m["cache_hits"] == 0 and m["estimated_cost_usd"] == 0.0
    div = m["diversity"]["exercise"]
    assert 0 <= div["duplicate_rate"] < 0.5 and 0 < div["distinct_4gram_ratio"] <= 1 and div["cells"] > 10
    assert manifest.rows["heldout"] == len(out["heldout"]) and set(m["heldout_families"]) >= {r["concept"] for r in out["heldout"]}
    assert manifest.rows["planned"] == sum(manifest.rows[k] for k in ("textbooks", "exercises", "heldout", "rejected"))


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


@pytest.mark.slow
def test_tiny_preset_cli_offline(tmp_path: Path):
    """Acceptance: `phiray synthesize` on the tiny preset, offline; 100% of kept exercises pass."""
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "phiray", "synthesize", "--run-dir", str(tmp_path), "--preset",
                           "tiny", "run.stages=[synthesize]", "run.num_cpus=2"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wall = time.time() - t0
    out = _check_outputs(tmp_path)
    assert len(out["textbooks"]) >= 250 and len(out["train"]) >= 400
    assert wall < 600, f"tiny synthesize took {wall:.0f}s"
