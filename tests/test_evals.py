"""phiray.evals: loaders and prompt formats, pass@k, canonical solutions through the sandbox, `phiray eval`."""

from __future__ import annotations

import json
import math

import pytest

from phiray.config import SandboxConfig
from phiray.evals.benchmarks import MBPP_TEST_IDS, load_humaneval, load_mbpp, write_jsonl
from phiray.evals.scoring import pass_at_k, score_samples, summarize, truncate
from phiray.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    # generous limits: a few reference solutions (e.g. MBPP 123) need seconds on a busy 2-core machine
    return Sandbox(SandboxConfig(workers=2, timeout_s=60, cpu_s=60))


def test_pass_at_k_matches_the_exact_formula():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (200, 17, 10), (200, 0, 1), (200, 200, 100), (5, 4, 2)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-12, abs=1e-12)
    assert pass_at_k(2, 1, 1) == 0.5 and pass_at_k(1, 1, 1) == 1.0 and pass_at_k(3, 2, 2) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)


def test_truncate_at_stop_sequences():
    assert truncate("    return 1\n\ndef other():\n    pass") == "    return 1\n"
    assert truncate("    return 1\nprint(f())") == "    return 1"


def test_loaders_and_prompt_formats(mbpp_dir):
    humaneval = load_humaneval()
    assert len(humaneval) == 164 and humaneval[0].task_id == "HumanEval/0"
    assert humaneval[0].prompt.rstrip().endswith('"""') and "def check" in humaneval[0].tests
    full, sanitized = load_mbpp(str(mbpp_dir), split="all"), load_mbpp(str(mbpp_dir), sanitized=True, split="all")
    assert (len(full), len(sanitized)) == (974, 427)
    test_split = load_mbpp(str(mbpp_dir))
    assert len(test_split) == 500 and {int(t.task_id.split("/")[1]) for t in test_split} == set(MBPP_TEST_IDS)
    task = next(t for t in test_split if t.task_id == "mbpp/11")
    assert task.prompt.startswith('def remove_Occ(s, ch):\n    """\n    Write a python function to remove first')
    assert 'assert remove_Occ("hello","l") == "heo"' in task.prompt and "\r" not in task.prompt + task.tests
    assert task.entry_point == "remove_Occ"
    assert all(t.entry_point for t in full + sanitized)


def _canonical_and_none(tasks, sandbox):
    jobs = [{"code": t.reference, "tests": t.tests, "entry_point": t.entry_point} for t in tasks]
    jobs += [{"code": t.program("    return None\n"), "tests": t.tests, "entry_point": t.entry_point} for t in tasks]
    verdicts = sandbox.check_many(jobs)
    good, none = verdicts[: len(tasks)], verdicts[len(tasks) :]
    failures = [(t.task_id, v.status, v.detail) for t, v in zip(tasks, good) if not v.passed]
    return failures, sum(v.passed for v in none)


def test_humaneval_canonical_all_pass_and_return_none_none(sandbox):
    failures, none_passes = _canonical_and_none(load_humaneval(), sandbox)
    assert failures == [] and none_passes == 0


@pytest.mark.slow
def test_mbpp_sanitized_canonical_all_pass_and_return_none_none(sandbox, mbpp_dir):
    failures, none_passes = _canonical_and_none(load_mbpp(str(mbpp_dir), sanitized=True, split="all"), sandbox)
    assert failures == [] and none_passes == 0


@pytest.mark.slow
def test_mbpp_full_canonical_all_pass_with_challenge_tests(sandbox, mbpp_dir):
    tasks = load_mbpp(str(mbpp_dir), split="all", challenge_tests=True)
    failures, none_passes = _canonical_and_none(tasks, sandbox)
    assert len(tasks) == 974 and failures == [] and none_passes == 0


def test_half_right_half_none_is_pass_at_1_of_exactly_one_half(sandbox):
    tasks = load_humaneval()[:10]
    samples = [
        {"task_id": t.task_id, "completion": t.reference[len(t.prompt) :] if i % 2 else "    return None\n"}
        for i, t in enumerate(tasks)
    ]
    summary, rows = score_samples(tasks, samples, sandbox, [1])
    assert summary["pass@1"] == 0.5 and [r["passed"] for r in rows] == [bool(i % 2) for i in range(10)]
    two_each = summarize([{**r, "task_id": "T"} for r in rows[:2]], [1, 2])
    assert two_each["pass@1"] == 0.5 and two_each["pass@2"] == 1.0


def test_cli_scores_a_samples_file_and_a_problems_file(tmp_path):
    from phiray.cli import main

    tasks = load_humaneval()[:3]
    samples = tmp_path / "samples.jsonl"
    write_jsonl(
        samples,
        [{"task_id": t.task_id, "completion": t.reference[len(t.prompt) :]} for t in tasks]
        + [{"task_id": tasks[0].task_id, "completion": "    return 42\n"}],
    )
    assert main(["eval", "--samples", str(samples), "-k", "1", "--workers", "2"]) == 0
    rows = [json.loads(line) for line in open(f"{samples}_results.jsonl")]
    assert [r["passed"] for r in rows] == [True, True, True, False] and "failed" in rows[-1]["result"]
    problems = tmp_path / "problems.jsonl"
    write_jsonl(
        problems,
        [
            {
                "task_id": "mine/0",
                "prompt": "def sq(x):\n",
                "entry_point": "sq",
                "test": "def check(candidate):\n    assert candidate(3) == 9\n",
            }
        ],
    )
    mine = tmp_path / "mine.jsonl"
    write_jsonl(
        mine,
        [
            {"task_id": "mine/0", "completion": "    return x * x\n"},
            {"task_id": "mine/0", "completion": "    return x + x\n"},
        ],
    )
    assert main(["eval", "--samples", str(mine), "--problems", str(problems), "-k", "1,2"]) == 0
    assert [json.loads(line)["passed"] for line in open(f"{mine}_results.jsonl")] == [True, False]


def test_cli_evaluates_an_openai_compatible_endpoint(tmp_path):
    from fake_openai import FakeOpenAI

    from phiray.cli import main

    tasks = load_humaneval()[:4]
    # The "model" answers the first three prompts with their canonical body, the last one wrongly.
    answers = {t.prompt: t.reference[len(t.prompt) :] for t in tasks[:3]} | {tasks[3].prompt: "    return None\n"}
    with FakeOpenAI(responder=lambda body: answers[body["prompt"]]) as server:
        assert (
            main(
                [
                    "eval",
                    "--endpoint",
                    server.base_url,
                    "--model-name",
                    "m",
                    "--bench",
                    "humaneval",
                    "--limit",
                    "4",
                    "-k",
                    "1",
                    "--out",
                    str(tmp_path),
                ]
            )
            == 0
        )
        assert [e["status"] for e in server.log] == [200] * 4
    results = json.loads((tmp_path / "results.json").read_text())["results"]["humaneval"]
    assert results["pass@1"] == 0.75 and results["tasks"] == 4
