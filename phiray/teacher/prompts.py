"""Prompt builders (textbook and exercise requests) and robust parsers for the answers.

Prompts put phi-1's "creative randomness" into each request: topic x subtopic x audience x style x a
seed snippet from the filtered corpus for textbooks; concept x topic x audience x difficulty for
exercises. Exercise answers must be two fenced Python blocks (function with docstring + solution;
assert-based tests). Parsers never raise: they return ``(result, None)`` or ``(None, reason)``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from phiray.teacher.base import Request

TEXTBOOK_HEADER = "Write a section of a Python textbook."
EXERCISE_HEADER = "Write one Python exercise in the style of HumanEval."
SYSTEM = "You are an expert Python teacher who writes clear, correct, self-contained material."
FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class Topic:
    area: str
    topic: str
    subtopics: tuple[str, ...]


def load_topics() -> list[Topic]:
    """The packaged topic catalogue (phiray/teacher/data/topics.txt)."""
    text = resources.files("phiray.teacher").joinpath("data", "topics.txt").read_text()
    topics = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        area, topic, subs = (part.strip() for part in line.split("|"))
        topics.append(Topic(area, topic, tuple(s.strip() for s in subs.split(";") if s.strip())))
    return topics


def textbook_request(
    key: str,
    topic: str,
    subtopic: str,
    audience: str,
    style: str,
    snippet: str | None,
    seed: int,
    concept: str = "",
    explain: str = "",
) -> Request:
    """A textbook prompt; ``concept`` (a train family, from the planner) is what its example teaches."""
    lines = [
        TEXTBOOK_HEADER,
        f"Topic: {topic}",
        f"Subtopic: {subtopic}",
        f"Audience: {audience}",
        f"Style: {style}",
        *([f"Concept: {concept} ({explain})"] if concept else []),
        "Explain the idea for this audience in this style and interleave the prose with short, correct, "
        "runnable Python examples in ```python fenced blocks.",
    ]
    if snippet:
        lines.append(f"For inspiration, here is a piece of real code on a related theme:\n```python\n{snippet}\n```")
    return Request(
        key=key,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}],
        seed=seed,
        meta={"task": "textbook"},
    )


def exercise_request(
    key: str, concept: str, explain: str, topic: str, audience: str, style: str, difficulty: int, seed: int
) -> Request:
    text = "\n".join(
        [
            EXERCISE_HEADER,
            f"Concept: {concept} ({explain})",
            f"Topic: {topic}",
            f"Audience: {audience}",
            f"Style: {style}",
            f"Difficulty: {difficulty}/3",
            "Answer with exactly two ```python fenced blocks. The first holds any imports, then one function with "
            "its signature, a docstring stating the task precisely, and a complete solution. The second holds unit "
            "tests: plain assert statements that call the function.",
        ]
    )
    return Request(
        key=key,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
        seed=seed,
        meta={"task": "exercise", "concept": concept, "difficulty": difficulty},
    )


def field_of(text: str, name: str) -> str | None:
    """The value of a ``Name: value`` line in a prompt."""
    match = re.search(rf"^{name}: (.*)$", text, re.M)
    return match.group(1).strip() if match else None


# --------------------------------------------------------------------------- parsing


def _parses(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _blocks(text: str | None, finish_reason: str | None) -> tuple[list[str], str | None]:
    """The fenced code blocks of an answer, or why there are none usable."""
    if not text or not text.strip():
        return [], "empty"
    if finish_reason == "length":
        return [], "truncated"
    if text.count("```") % 2:
        return [], "broken_format"
    blocks = FENCE.findall(text)
    return blocks, None if blocks else "no_code"


def parse_textbook(
    text: str | None, finish_reason: str | None = None, min_chars: int = 200
) -> tuple[str | None, str | None]:
    """A passage with at least one parseable code block, else a reason."""
    blocks, reason = _blocks(text, finish_reason)
    if reason:
        return None, reason
    if not any(_parses(b) is not None for b in blocks):
        return None, "syntax_error"
    if len(text.strip()) < min_chars:  # type: ignore[union-attr]
        return None, "too_short"
    return text.strip() + "\n", None  # type: ignore[union-attr]


def _pick_function(tree: ast.Module, tests: str) -> ast.FunctionDef | None:
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and ast.get_docstring(n)]
    called = [f for f in funcs if re.search(rf"\b{re.escape(f.name)}\s*\(", tests)]
    if called:
        return called[-1]
    return funcs[0] if funcs else None


def _split_single_block(code: str) -> tuple[str, str]:
    """One block holding the function and top-level asserts: split it into (code, tests)."""
    tree = _parses(code)
    if tree is None:
        return code, ""
    first_assert = next((n for n in tree.body if isinstance(n, ast.Assert)), None)
    if first_assert is None:
        return code, ""
    lines = code.splitlines()
    return "\n".join(lines[: first_assert.lineno - 1]), "\n".join(lines[first_assert.lineno - 1 :])


def parse_exercise(text: str | None, finish_reason: str | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """Two fenced blocks -> {prompt, solution, tests, entry_point, signature, docstring}, else a reason."""
    blocks, reason = _blocks(text, finish_reason)
    if reason:
        return None, reason
    code, tests = (
        (blocks[0], "\n\n".join(b for b in blocks[1:] if "assert" in b)) if len(blocks) > 1 else (blocks[0], "")
    )
    if not tests:
        code, tests = _split_single_block(code)
    tree = _parses(code)
    if tree is None:
        return None, "syntax_error"
    if not tests.strip():
        return None, "no_tests"
    if _parses(tests) is None:
        return None, "tests_syntax_error"
    fn = _pick_function(tree, tests)
    if fn is None:
        return None, "no_function"
    if not re.search(rf"\b{re.escape(fn.name)}\s*\(", tests):
        return None, "tests_do_not_call"
    lines = code.splitlines()
    doc_end = fn.body[0].end_lineno or fn.body[0].lineno
    body = lines[doc_end : fn.end_lineno]
    if not any(line.strip() for line in body):
        return None, "empty_body"
    prompt = "\n".join(lines[:doc_end]).strip("\n") + "\n"
    signature = next(line.strip() for line in lines[fn.lineno - 1 : doc_end] if line.strip().startswith("def "))
    return {
        "prompt": prompt,
        "solution": "\n".join(body).rstrip() + "\n",
        "tests": tests.strip() + "\n",
        "entry_point": fn.name,
        "signature": signature,
        "docstring": ast.get_docstring(fn) or "",
    }, None
