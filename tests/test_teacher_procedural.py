"""ProceduralTeacher: >= 40 randomised concepts whose exercises pass their tests in the sandbox, varied
enough (names, values, wording) that a held-out split by family is fair."""

from __future__ import annotations

from collections import Counter

import pytest

from phiray.config import SandboxConfig, TeacherConfig
from phiray.teacher import Request, make_teacher
from phiray.teacher.concepts import all_concepts, generate
from phiray.teacher.plan import heldout_families, plan_rows, request_for
from phiray.teacher.prompts import parse_exercise, parse_textbook
from phiray.teacher.worker import parse_response

AREAS = {
    "strings",
    "lists",
    "dicts",
    "sets",
    "sorting",
    "searching",
    "recursion",
    "arithmetic",
    "classes",
    "generators",
    "exceptions",
    "comprehensions",
}


def test_catalogue_has_40_concepts_over_the_required_areas():
    concepts = all_concepts()
    assert len(concepts) >= 40
    assert AREAS <= {c.area for c in concepts.values()}


def test_instances_are_deterministic_and_varied():
    for name in all_concepts():
        assert generate(name, 5) == generate(name, 5)
        instances = [generate(name, seed) for seed in range(30)]
        prompts = {ex["prompt"] for ex in instances}
        tests = {ex["tests"] for ex in instances}
        assert len(prompts) >= 8, f"{name}: only {len(prompts)} distinct prompts in 30 draws"
        assert len(tests) >= 25, f"{name}: values barely vary"
        assert len({ex["entry_point"] for ex in instances}) >= 2, f"{name}: function name never varies"


def test_every_concept_passes_its_tests_in_the_sandbox():
    from phiray.sandbox import Sandbox

    exercises = [generate(name, seed) for name in sorted(all_concepts()) for seed in (0, 1, 2)]
    verdicts = Sandbox(SandboxConfig(workers=2)).check_many(
        [
            {"code": ex["prompt"] + ex["solution"], "tests": ex["tests"], "entry_point": ex["entry_point"]}
            for ex in exercises
        ]
    )
    failed = [(ex["concept"], v.status, v.detail[:200]) for ex, v in zip(exercises, verdicts) if not v.passed]
    assert not failed
    # ... and the prompt alone (no solution) must not pass: the tests really test something.
    stub_verdicts = Sandbox(SandboxConfig(workers=2)).check_many(
        [
            {"code": ex["prompt"] + "    pass\n", "tests": ex["tests"], "entry_point": ex["entry_point"]}
            for ex in exercises[::3]
        ]
    )
    assert sum(v.passed for v in stub_verdicts) == 0


def test_teacher_answers_parse_into_the_exercise_schema():
    teacher = make_teacher(TeacherConfig(kind="procedural"))
    rows = plan_rows(
        20,
        60,
        ["kids", "professionals"],
        ["concise", "socratic"],
        seed=3,
        heldout_fraction=0.2,
        snippets=["def a():\n    return 1\n"],
        snippet_chars=100,
    )
    responses = teacher.complete([request_for(r) for r in rows])
    parsed = [parse_response(r, resp.text, resp.finish_reason, resp.error) for r, resp in zip(rows, responses)]
    assert all(p["status"] == "ok" for p in parsed), Counter(p["reason"] for p in parsed)
    ex = [p for p in parsed if p["kind"] == "exercise"]
    assert all(p["text"] == p["prompt"] + p["solution"] and p["entry_point"] in p["tests"] for p in ex)
    assert teacher.stats["tokens_out"] > 0


def test_textbooks_follow_audience_and_style():
    teacher = make_teacher(TeacherConfig(kind="procedural"))
    from phiray.teacher.prompts import textbook_request

    a = teacher.complete([textbook_request("a", "lists", "slicing", "young children", "step by step", None, 1)])[0]
    b = teacher.complete([textbook_request("b", "lists", "slicing", "professionals", "reference", None, 1)])[0]
    assert a.text != b.text and "one line at a time" in a.text and "Signature:" in b.text
    assert parse_textbook(a.text)[1] is None and parse_textbook(b.text)[1] is None


def test_unsupported_requests_are_errors_not_crashes():
    [resp] = make_teacher(TeacherConfig(kind="procedural")).complete([Request(key="x", prompt="Rate this code 0-5")])
    assert resp.error == "unsupported_request" and resp.text is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_heldout_split_is_family_disjoint_with_no_identical_prompts(seed):
    rows = plan_rows(0, 600, ["a"], ["b"], seed=seed, heldout_fraction=0.1, snippets=[], snippet_chars=0)
    train = [r for r in rows if r["split"] == "train"]
    held = [r for r in rows if r["split"] == "heldout"]
    assert held and train and not ({r["concept"] for r in train} & {r["concept"] for r in held})
    teacher = make_teacher(TeacherConfig(kind="procedural"))
    texts = {}
    for split, part in (("train", train), ("heldout", held)):
        answers = teacher.complete([request_for(r) for r in part])
        texts[split] = [parse_exercise(a.text)[0] for a in answers]
    assert not {e["prompt"] for e in texts["train"]} & {e["prompt"] for e in texts["heldout"]}
    assert not {e["docstring"] for e in texts["train"]} & {e["docstring"] for e in texts["heldout"]}
    assert heldout_families(sorted(all_concepts()), 0.1, seed) == {r["concept"] for r in held}


@pytest.mark.parametrize("seed", [0, 4])
def test_three_splits_and_textbooks_only_teach_train_families(seed):
    """Textbooks are planned on train families (their worked example pastes prompt + solution, so a
    held-out family in a textbook would be the test split in the pretraining data); validation rows are
    instances of train families; the test split is whole held-out families."""
    from phiray.data import ngrams

    rows = plan_rows(
        120, 600, ["a"], ["b"], seed=seed, heldout_fraction=0.1, snippets=[], snippet_chars=0, validation_fraction=0.15
    )
    held = heldout_families(sorted(all_concepts()), 0.1, seed)
    by_split = Counter(r["split"] for r in rows if r["kind"] == "exercise")
    assert by_split["train"] and by_split["heldout"] and 40 <= by_split["validation"] <= 130
    train_families = {r["concept"] for r in rows if r["split"] == "train"}
    assert {r["concept"] for r in rows if r["split"] == "validation"} <= train_families
    textbooks = [r for r in rows if r["kind"] == "textbook"]
    assert all(r["concept"] and r["concept"] not in held for r in textbooks)
    assert len({r["concept"] for r in textbooks}) > 10  # still spread over the catalogue
    teacher = make_teacher(TeacherConfig(kind="procedural"))
    answers = teacher.complete([request_for(r) for r in rows if r["kind"] == "textbook" or r["split"] == "heldout"])
    test = [parse_exercise(a.text)[0] for a in answers[len(textbooks) :]]
    index = ngrams.build_index(((str(i), e["solution"]) for i, e in enumerate(test)), 13)
    assert index and not [a.key for a in answers[: len(textbooks)] if ngrams.matches(a.text, index, 13)]
    assert all(f"Concept: {r['concept']} (" in request_for(r).text() for r in textbooks)


def test_the_catalogue_is_whole_however_it_was_first_imported():
    """A process (a generation actor's thread) that imported one concept module first still finds every
    concept: the catalogue was once 'loaded' as soon as any module had registered (KeyError: 'is_prime')."""
    import subprocess
    import sys

    code = (
        "import phiray.teacher.concepts.strings\n"
        "from phiray.teacher.concepts import generate\n"
        "print(generate('is_prime', 3)['entry_point'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() in {"is_prime", "prime", "check_prime"}
