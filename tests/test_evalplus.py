"""HumanEval+ / MBPP+ through phiray's sandbox: the loader reads EvalPlus's own file format, and the tests are
differential (canonical solution vs candidate on every base and plus input).

EvalPlus's data is not in any PyPI package (the ``evalplus`` wheel downloads it from GitHub at run time), so
these tests write small files in the real format from HumanEval's own problems and canonical solutions,
with inputs chosen here. On the real files the same checks are `phiray eval --samples` with the canonical
solutions (164/164) and with stubs (0).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest

from phiray.config import SandboxConfig
from phiray.evals.benchmarks import load_benchmark, load_humaneval
from phiray.evals.evalplus import agrees, evalplus_file, load_evalplus
from phiray.evals.scoring import score_samples
from phiray.sandbox import Sandbox

INPUTS = {  # task -> (base_input, plus_input, atol)
    "HumanEval/0": (
        [[[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3], [[1.0, 2.0, 3.0], 0.5]],
        [[[1.0, 1.5], 0.5], [[3.0, 1.0, 3.25], 0.2]],
        0,
    ),
    "HumanEval/2": ([[3.5], [1.33]], [[123.456], [0.0001]], 1e-6),
    "HumanEval/32": ([[[1, 2]], [[-6, 11, -6, 1]]], [[[5, 0, 0, -1]]], 1e-4),
}
# Right on HumanEval's own tests, wrong on a plus input: "closer than" read as "at most" (a tie counts).
AT_MOST = "    s = sorted(numbers)\n    return any(b - a <= threshold for a, b in zip(s, s[1:]))\n"
MBPP_ROWS = [
    {
        "task_id": "Mbpp/2",
        "prompt": '"""\nWrite a function to find the shared elements from the given two lists.\n'
        'assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"""\n',
        "canonical_solution": "def similar_elements(test_tup1, test_tup2):\n  return tuple(set(test_tup1) & set(test_tup2))\n",
        "entry_point": "similar_elements",
        "base_input": [[[3, 4, 5, 6], [5, 7, 4, 10]]],
        "plus_input": [[[1, 2, 3, 40, 50], [50, 3, 60]]],
        "atol": 0,
    },
    {
        "task_id": "Mbpp/17",
        "prompt": '"""\nWrite a function that returns the perimeter of a square given its side length as input.\n'
        'assert square_perimeter(10)==40\n"""\n',
        "canonical_solution": "def square_perimeter(a):\n  return 4*a\n",
        "entry_point": "square_perimeter",
        "base_input": [[10], [5]],
        "plus_input": [[2.5], [0.1]],
        "atol": 0,
    },
]


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(SandboxConfig(workers=2, timeout_s=60, cpu_s=60))


@pytest.fixture
def evalplus_dir(tmp_path, monkeypatch):
    """HumanEvalPlus-v0.1.10.jsonl.gz and MbppPlus-v0.2.0.jsonl in EvalPlus's format, via $PHIRAY_EVALPLUS_PATH."""
    humaneval = {t.task_id: t for t in load_humaneval()}
    rows = []
    for task_id, (base, plus, atol) in INPUTS.items():
        t = humaneval[task_id]
        rows.append(
            {
                "task_id": task_id,
                "prompt": t.prompt,
                "canonical_solution": t.reference[len(t.prompt) :],
                "entry_point": t.entry_point,
                "contract": "",
                "base_input": base,
                "plus_input": plus,
                "atol": atol,
            }
        )
    with gzip.open(tmp_path / "HumanEvalPlus-v0.1.10.jsonl.gz", "wt") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "MbppPlus-v0.2.0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MBPP_ROWS))
    monkeypatch.setenv("PHIRAY_EVALPLUS_PATH", str(tmp_path))
    return tmp_path


def _score(tasks, sandbox, completion_of):
    samples = [{"task_id": t.task_id, "completion": completion_of(t)} for t in tasks]
    summary, rows = score_samples(tasks, samples, sandbox, [1])
    return summary, {r["task_id"]: r for r in rows}


@pytest.mark.parametrize("bench", ["humaneval+", "mbpp+"])
def test_canonical_solutions_pass_every_task_and_stubs_none(evalplus_dir, sandbox, bench):
    tasks = load_benchmark(bench)
    assert len(tasks) == (3 if bench == "humaneval+" else 2)
    if bench == "mbpp+":  # a complete program each: run it as the candidate, as the MBPP references are
        jobs = [{"code": t.reference, "tests": t.tests, "entry_point": t.entry_point} for t in tasks]
        verdicts = sandbox.check_many(jobs)
        assert all(v.passed for v in verdicts), [v.detail for v in verdicts]
        assert tasks[0].prompt.startswith("def similar_elements(test_tup1, test_tup2):\n")
    else:
        summary, _ = _score(tasks, sandbox, lambda t: t.reference[len(t.prompt) :])
        assert summary["pass@1"] == 1.0, summary
    summary, rows = _score(tasks, sandbox, lambda t: "    pass\n")
    assert summary["pass@1"] == 0.0 and all(r["status"] == "failed" for r in rows.values())


def test_plus_inputs_are_stricter_than_humaneval_on_the_same_sample(evalplus_dir, sandbox):
    plain = [t for t in load_humaneval() if t.task_id == "HumanEval/0"]
    plus = [t for t in load_evalplus("humaneval+") if t.task_id == "HumanEval/0"]
    assert plus[0].prompt == plain[0].prompt  # same problem, same prompt: one samples file scores on both
    on_plain, _ = _score(plain, sandbox, lambda t: AT_MOST)
    on_plus, rows = _score(plus, sandbox, lambda t: AT_MOST)
    assert on_plain["pass@1"] == 1.0 and on_plus["pass@1"] == 0.0
    assert "input #2" in rows["HumanEval/0"]["result"]  # the first plus input (after the two base ones)


def test_the_comparison_follows_evalplus():
    assert agrees(0.30000000000000004, 0.3, [], 0.0, "equal")  # floats: 1e-6 when atol is 0
    assert not agrees(1, 1.0000001, [], 0.0, "equal")  # an int where a float is due: only exact equality
    assert agrees([1.0, 2.0], [1.0, 2.0000001], [], 0.0, "equal") and not agrees([1.0], [1.0, 2.0], [], 0, "equal")
    assert agrees((4, 5), (5, 4), [], 0, "set") and not agrees(None, (4,), [], 0, "set")
    assert agrees(1.0, -9.0, [[-1, 1]], 1e-4, "root") and not agrees(2.0, 1.0, [[-1, 1]], 1e-4, "root")
    assert agrees(True, 1, [], 0, "equal")  # Python's own ==: True == 1, as EvalPlus compares


def test_missing_data_names_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PHIRAY_EVALPLUS_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"HumanEvalPlus\.jsonl\[\.gz\] in .*nowhere.*evalplus_path"):
        load_benchmark("humaneval+")
    (tmp_path / "MbppPlus.jsonl").write_text(json.dumps({"task_id": "Mbpp/2", "prompt": "x"}) + "\n")
    assert evalplus_file("mbpp+", str(tmp_path)).name == "MbppPlus.jsonl"
    with pytest.raises(ValueError, match="lacks .*canonical_solution"):
        load_evalplus("mbpp+", str(tmp_path))


def test_phiray_eval_scores_a_samples_file_on_humaneval_plus(evalplus_dir, tmp_path):
    tasks = load_evalplus("humaneval+")
    samples = tmp_path / "samples.jsonl"
    rows = [{"task_id": t.task_id, "completion": t.reference[len(t.prompt) :]} for t in tasks]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "phiray", "eval", "--samples", str(samples), "--bench", "humaneval+"]
    done = subprocess.run(cmd + ["--evalplus-path", str(evalplus_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "100.0%" in done.stdout
