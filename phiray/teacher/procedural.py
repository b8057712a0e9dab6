"""ProceduralTeacher: the offline default. No network, no key, deterministic per request.

It reads the same prompts an LLM would get (see :mod:`phiray.teacher.prompts`) and answers in the same
format, so the synthesize stage parses, verifies and dedups both teachers' output identically. Exercises
come from the concept catalogue (:mod:`phiray.teacher.concepts`); textbook passages wrap a concept
instance in prose whose wording depends on the audience and style asked for.
"""

from __future__ import annotations

import hashlib
from typing import Any

from phiray.teacher.base import Request, Response, new_stats
from phiray.teacher.concepts import Rng, all_concepts, generate
from phiray.teacher.plan import concept_for_topic
from phiray.teacher.prompts import EXERCISE_HEADER, TEXTBOOK_HEADER, field_of

INTROS = {
    "young children": [
        "Imagine you have a big box of {thing}s.",
        "Let's play a game with {thing}s!",
        "Computers are like helpful robots that follow our instructions very exactly.",
    ],
    "high school students": [
        "In this section we look at {topic}, a tool you will use in almost every program.",
        "Suppose you are writing a small app for your class and need to handle {subtopic}.",
    ],
    "college students": [
        "This section studies {topic}, focusing on {subtopic}, and the reasoning behind a correct solution.",
        "We now formalise {subtopic} as part of {topic} and derive a short implementation.",
    ],
    "professionals": [
        "{Topic} comes up constantly in production code; here is the idiomatic approach to {subtopic}.",
        "A quick refresher on {subtopic} ({topic}), with an implementation you can reuse.",
    ],
}
GENERIC_INTROS = [
    "This section is about {topic}, and in particular {subtopic}.",
    "Let us explore {subtopic}, an important part of {topic}.",
]
CLOSINGS = [
    "Try it yourself: change the inputs and predict the output before running the code.",
    "As an exercise, write two more tests of your own, including an edge case.",
    "Notice how short the solution is once the idea is clear.",
    "Think about what happens with an empty input, and check that the code handles it.",
]


def _seed_for(text: str, seed: Any) -> int:
    return int(hashlib.sha256(f"{seed}|{text}".encode()).hexdigest()[:12], 16)


def _example_lines(tests: str, rng: Rng, n: int = 2) -> list[str]:
    asserts = [t[len("assert ") :] for t in tests.splitlines() if t.startswith("assert ") and " == " in t]
    picks = rng.sample(asserts, min(n, len(asserts)))
    return [f"`{call}` gives `{expected}`" for call, expected in (p.rsplit(" == ", 1) for p in picks)]


def _style_block(style: str, ex: dict[str, Any], rng: Rng) -> str:
    body = [ln.strip() for ln in ex["solution"].splitlines() if ln.strip()]
    if style == "step by step":
        steps = [f"{i}. `{line}`" for i, line in enumerate(body[:6], 1)]
        return "Let's go through the solution one line at a time:\n\n" + "\n".join(steps)
    if style == "socratic":
        qs = [
            "What should the function return for the simplest possible input?",
            "Which Python feature lets us visit every element?",
            "How do we know the loop ends?",
            "Could a built-in function do part of the work?",
        ]
        return "\n".join(f"- {q}" for q in rng.sample(qs, 3))
    if style == "narrative":
        who = rng.choice(["Ada", "Sam", "Priya", "Leo", "Mina", "Omar"])
        return (
            f"{who} had exactly this problem last week. At first {who} tried to do everything by hand, "
            f"then realised that `{ex['entry_point']}` could do it in {len(body)} line(s)."
        )
    if style == "reference":
        return f"Signature: `{ex['signature']}`\n\nReturns: {ex['docstring'].splitlines()[0]}"
    return f"The whole idea fits in {len(body)} line(s) of Python."


def textbook_passage(topic: str, subtopic: str, audience: str, style: str, seed: int, concept: str = "") -> str:
    """A passage on ``concept`` (the planner picks a train family; a prompt naming none gets one matching
    the topic, from the whole catalogue: such a prompt carries no split)."""
    rng = Rng(seed)
    concepts = all_concepts()
    if concept not in concepts:
        concept = concept_for_topic(topic.split()[0] if topic else "", topic, sorted(concepts), rng)
    chosen = concepts[concept]
    ex = generate(chosen.name, rng.randrange(10**9))
    fmt = {"topic": topic, "Topic": topic[:1].upper() + topic[1:], "subtopic": subtopic, "thing": rng.word()}
    intro = rng.choice(INTROS.get(audience, GENERIC_INTROS)).format(**fmt)
    task = ex["docstring"].split("\n\n")[0]
    title = rng.choice(["## {Topic}: {subtopic}", "# {subtopic} ({topic})", "### Learning {subtopic}"]).format(**fmt)
    examples = _example_lines(ex["tests"], rng)
    parts = [
        title,
        intro,
        chosen.explain,
        rng.choice(
            ["Here is a task to make this concrete:", "Consider the following problem:", "Let's solve a small problem:"]
        )
        + " "
        + task[:1].lower()
        + task[1:],
        "```python\n" + ex["prompt"] + ex["solution"] + "```",
        _style_block(style, ex, rng),
    ]
    if examples:
        parts.append("For example, " + " and ".join(examples) + ".")
    parts.append(rng.choice(CLOSINGS))
    return "\n\n".join(parts) + "\n"


def exercise_answer(concept: str, seed: int) -> str:
    ex = generate(concept, seed)
    return f"```python\n{ex['prompt']}{ex['solution']}```\n\n```python\n{ex['tests']}```\n"


def answer_for_text(text: str, seed: Any = None) -> str | None:
    """Answer a textbook or exercise prompt built by :mod:`phiray.teacher.prompts` (None if neither)."""
    rng_seed = _seed_for(text, seed)
    if EXERCISE_HEADER in text:
        concept = (field_of(text, "Concept") or "").split(" ")[0]
        if concept not in all_concepts():
            concept = sorted(all_concepts())[rng_seed % len(all_concepts())]
        return exercise_answer(concept, rng_seed)
    if TEXTBOOK_HEADER in text:
        return textbook_passage(
            field_of(text, "Topic") or "Python",
            field_of(text, "Subtopic") or "basics",
            field_of(text, "Audience") or "",
            field_of(text, "Style") or "",
            rng_seed,
            (field_of(text, "Concept") or "").split(" ")[0],
        )
    return None


class ProceduralTeacher:
    def __init__(self, cfg: Any = None):
        self.cfg = cfg
        self.stats: dict[str, Any] = new_stats()

    def complete(self, requests: list[Request]) -> list[Response]:
        out = []
        for req in requests:
            prompt = req.text()
            answer = answer_for_text(prompt, req.seed)
            self.stats["requests"] += 1
            if answer is None:
                self.stats["failures_by_reason"]["unsupported_request"] = (
                    self.stats["failures_by_reason"].get("unsupported_request", 0) + 1
                )
                out.append(Response(key=req.key, text=None, error="unsupported_request"))
                continue
            tin, tout = len(prompt.split()), len(answer.split())  # whitespace tokens: a rough, free count
            self.stats["tokens_in"] += tin
            self.stats["tokens_out"] += tout
            out.append(Response(key=req.key, text=answer, tokens_in=tin, tokens_out=tout, finish_reason="stop"))
        return out
