"""`phiray report`: a self-contained HTML page (rendered by headless Chromium) and Markdown from a run dir."""

import base64
import re
import shutil
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from phiray.cli import main
from phiray.config import load_config
from phiray.rundir import Manifest, RunDir


def _curve(start, end, steps):
    val = [
        {
            "step": s,
            "val_loss": start - (start - end) * s / steps,
            "val_loss/textbooks": start - s / steps,
            "val_loss/exercises": start + 0.1 - s / steps,
        }
        for s in range(0, steps + 1, steps // 4)
    ]
    train = [{"step": s, "loss": start - (start - end) * s / steps} for s in range(1, steps + 1)]
    return {"curve": {"train": train, "val": val}}


def make_run(path):
    rd = RunDir(path)
    cfg = load_config("tiny")
    rd.write_text("config.yaml", cfg.to_yaml())

    def done(stage, **kw):
        rd.finish(
            Manifest(stage=stage, **kw),
            config_hash=cfg.section_hash(
                next(s for s in __import__("phiray.stages").stages.STAGES if s.name == stage).sections
            ),
            inputs={},
            started_at="t",
            wall_time_s=1.0,
        )

    docs = pa.table(
        {
            "text": [f"def f{i}():\n    '''Doc.'''\n    return {i}\n" for i in range(20)],
            "path": [f"m{i}.py" for i in range(20)],
            "score": [i / 20 for i in range(20)],
        }
    )
    for rel, rows in (("filter/documents", docs.slice(10)), ("filter/rejected", docs.slice(0, 10))):
        rd.makedirs(rel)
        pq.write_table(rows, rd.path(rel, "part-0.parquet"))
    done("filter", rows={"in": 20, "kept": 10}, metrics={"cutoff": 0.5}, headline={"kept": 10})
    done(
        "classify",
        metrics={"heldout": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "roc_auc": 0.9, "n_train": 80, "n_test": 20}},
        headline={"f1": 0.75},
    )
    done(
        "synthesize",
        rows={"textbooks": 5, "exercises": 7},
        metrics={
            "diversity": {
                "textbook": {
                    "samples": 5,
                    "duplicate_rate": 0.0,
                    "cells": 5,
                    "cells_with_duplicates": 0,
                    "distinct_4gram_ratio": 0.9,
                }
            },
            "failures_by_reason": {"no_code": 2},
            "decontamination": {
                "ngram": 13,
                "benchmark_tasks": {"humaneval": 164, "mbpp": 974},
                "corpus": {"source": "decontaminate/documents", "documents": 30, "matched": 1},
                "sources": {
                    s: {
                        "checked": 5,
                        "contaminated": int(s == "textbooks"),
                        "test_overlap": 0,
                        "corpus_overlap": int(s == "heldout"),
                        "matched_tasks": {"MBPP/17": 1} if s == "textbooks" else {},
                    }
                    for s in ("textbooks", "exercises", "validation", "heldout")
                },
            },
        },
    )
    done(
        "similarity",
        rows={"problems": 164, "exercises": 400, "pruned": 0, "pairs": 300, "skipped_large": 2},
        metrics={
            "tau_table": [{"tau": t, "problems": n, "of": 164} for t, n in ((0.95, 0), (0.9, 1), (0.85, 3), (0.8, 7))],
            "embedder": "hashing",
            "top_k": 2,
            "prune_tau": None,
            "median_embedding_distance": 0.9,
            "closest": [
                {
                    "problem": "HumanEval/53",
                    "nearest_by_tau": "ex-1",
                    "best_tau": 0.91,
                    "nearest_by_embedding": "ex-2",
                    "embedding_distance": 0.4,
                }
            ],
        },
    )
    done(
        "decontaminate",
        rows={"in": 30, "kept": 29, "contaminated": 1},
        metrics={"ngram": 13, "matched_tasks": {"HumanEval/3": 1}, "benchmark_tasks": {"humaneval": 164}},
    )
    done("pretrain", rows={"steps": 40}, metrics=_curve(8.0, 5.0, 40), headline={"val_loss_final": 5.0})
    done(
        "grow",
        rows={"steps": 20},
        metrics=_curve(5.2, 4.6, 20) | {"growth": {"layer_map": [0, 1, 1]}},
        headline={"step0_grown": 5.2, "step0_small": 5.0, "step0_fresh": 8.3},
    )
    done("finetune", rows={"steps": 20}, metrics=_curve(3.0, 2.0, 20))
    done("control", rows={"steps": 40}, metrics=_curve(8.0, 5.9, 40))
    done(
        "evaluate",
        metrics={"pretrain/exercises/pass@1": 0.25, "control/exercises/pass@1": 0.05, "finetune/humaneval/pass@1": 0.0},
    )
    return rd


def test_report_has_every_section_and_real_numbers(tmp_path, capsys):
    rd = make_run(tmp_path / "run")
    assert main(["report", str(tmp_path / "run")]) == 0
    page = rd.read_text("report/report.html")
    for title in (
        "Stages",
        "Quality filtering",
        "Synthetic textbooks",
        "grown vs scratch",
        "thesis",
        "Evaluation",
        "Decontamination and held-out splits",
        "phi-1 §5: HumanEval vs the training exercises",
    ):
        assert title.lower() in page.lower(), title
    for source in (
        "corpus (decontaminate/documents)",
        "synthesize/textbooks",
        "synthesize/validation",
        "HumanEval/3",
        "MBPP/17",
        "HumanEval/53",
        "7 / 164",
    ):  # decontamination counts and the §5 table of every source that trains a model
        assert source in page, source
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) >= 6
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "0.25" in page and "0.05" in page  # control-vs-phiray pass@1 from the evaluate manifest
    assert "One seed (run.seed = 1234)" in page and "shows nothing" not in page
    md = rd.read_text("report/report.md")
    assert "| metric | phiray (pretrain) | control (unfiltered) |" in md
    assert "![quality-score histogram with threshold](score_histogram.png)" in md
    assert rd.read_bytes("report/score_histogram.png")[:4] == b"\x89PNG"


def test_report_of_a_partial_run_says_what_is_missing(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.write_text("config.yaml", load_config("tiny").to_yaml())
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "has not run" in rd.read_text("report/report.html")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (make sysdeps installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    rd = make_run(tmp_path / "run")
    assert main(["report", str(tmp_path / "run")]) == 0
    shot = tmp_path / "shot.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = f"file://{rd.path('report/report.html')}"
    dom = subprocess.run(["chromium", *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # The DOM Chromium built holds the plots as decoded <img> elements.
    assert len(re.findall(r"<img class=\"plot\"", dom.stdout)) >= 6
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", "--window-size=1000,3000", url], capture_output=True, timeout=120
    )
    assert shot.exists() and shot.stat().st_size > 20_000
