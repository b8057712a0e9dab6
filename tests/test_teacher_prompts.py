"""Prompt builders, the packaged topic catalogue, and robust parsing of teacher answers."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from phiray.teacher.prompts import (
    exercise_request,
    field_of,
    load_topics,
    parse_exercise,
    parse_textbook,
    textbook_request,
)

REPO = Path(__file__).resolve().parents[1]
GOOD = '''Here is an exercise.

```python
import math


def hypotenuse(a, b):
    """Return the length of the hypotenuse of a right triangle with legs a and b."""
    return math.sqrt(a * a + b * b)
```

And the tests:

```python
assert hypotenuse(3, 4) == 5.0
assert hypotenuse(0, 0) == 0.0
```
Good luck!'''


def test_topic_catalogue_is_package_data_with_200_topics():
    topics = load_topics()
    assert len(topics) >= 200
    assert len({t.topic for t in topics}) == len(topics)
    assert all(t.subtopics for t in topics)
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["phiray"]
    assert any(fnmatch.fnmatch("teacher/data/topics.txt", g) for g in globs)


def test_textbook_prompt_carries_every_random_factor():
    req = textbook_request("k", "sorting", "merge sort", "young children", "narrative", "x = 1", seed=7)
    text = req.text()
    assert field_of(text, "Topic") == "sorting" and field_of(text, "Subtopic") == "merge sort"
    assert field_of(text, "Audience") == "young children" and field_of(text, "Style") == "narrative"
    assert "x = 1" in text and req.seed == 7
    assert "inspiration" not in textbook_request("k", "t", "s", "a", "b", None, seed=1).text()


def test_parse_good_exercise_splits_prompt_and_solution():
    ex, reason = parse_exercise(GOOD)
    assert reason is None
    assert ex["entry_point"] == "hypotenuse" and ex["signature"] == "def hypotenuse(a, b):"
    assert ex["prompt"].startswith("import math") and ex["prompt"].rstrip().endswith('"""')
    assert ex["solution"] == "    return math.sqrt(a * a + b * b)\n"
    assert ex["tests"].count("assert") == 2 and ex["docstring"].startswith("Return the length")


def test_single_block_with_top_level_asserts_is_split():
    answer = '```python\ndef inc(x):\n    """Add one."""\n    return x + 1\n\nassert inc(1) == 2\n```'
    ex, reason = parse_exercise(answer)
    assert reason is None and ex["tests"] == "assert inc(1) == 2\n" and "assert" not in ex["solution"]


@pytest.mark.parametrize(
    "answer,finish,reason",
    [
        ("", None, "empty"),
        ("I cannot help with that.", None, "no_code"),
        (GOOD, "length", "truncated"),
        (GOOD[: GOOD.index("And the tests")] + "```python\nassert hypo", None, "broken_format"),
        ('```python\ndef f(x:\n    """Doc."""\n```\n```python\nassert f(1) == 1\n```', None, "syntax_error"),
        ("```python\ndef f(x):\n    return x\n```\n```python\nassert f(1) == 1\n```", None, "no_function"),
        ('```python\ndef f(x):\n    """Doc."""\n    return x\n```', None, "no_tests"),
        (
            '```python\ndef f(x):\n    """Doc."""\n    return x\n```\n```python\nassert g(1) == 1\n```',
            None,
            "tests_do_not_call",
        ),
        ('```python\ndef f(x):\n    """Doc."""\n```\n```python\nassert f(1) is None\n```', None, "empty_body"),
        (
            '```python\ndef f(x):\n    """Doc."""\n    return x\n```\n```python\nassert f(1 ==\n```',
            None,
            "tests_syntax_error",
        ),
    ],
)
def test_bad_exercises_are_rejected_with_a_reason(answer, finish, reason):
    assert parse_exercise(answer, finish) == (None, reason)


def test_textbook_parsing():
    prose = "Loops repeat work. " * 15
    good = prose + "\n\n```python\nfor i in range(3):\n    print(i)\n```\n"
    assert parse_textbook(good)[1] is None
    assert parse_textbook(prose) == (None, "no_code")
    assert parse_textbook(good, "length") == (None, "truncated")
    assert parse_textbook("short\n```python\nx = 1\n```") == (None, "too_short")
    assert parse_textbook(prose + "```python\ndef broken(:\n```") == (None, "syntax_error")


def test_exercise_request_names_the_concept():
    req = exercise_request("k", "gcd", "Euclid", "arithmetic", "professionals", "concise", 2, seed=3)
    assert field_of(req.text(), "Concept").startswith("gcd") and req.meta["concept"] == "gcd"
