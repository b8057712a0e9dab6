"""Planning a synthesis run: the prompt rows (one per sample to generate) and the three splits.

Exercises are ``train``; ``validation`` (held-out *instances* of the train families, what sweeps and
early stopping select on); or ``heldout``, the test split: whole concept families that nothing which
trains or selects ever sees. Textbooks are planned on a train family too, so no passage teaches a
held-out one. Rows are plain dicts so they travel through Ray Data as they are. Every random choice derives from
``run.seed`` and the row index, so a re-run plans the same rows, the same requests, and therefore hits
the request cache for everything already answered.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from phiray.teacher.base import Request
from phiray.teacher.concepts import all_concepts
from phiray.teacher.prompts import Topic, exercise_request, load_topics, textbook_request

# Topic-catalogue areas -> concept-catalogue areas, where the names differ.
AREA_ALIASES = {
    "oop": "classes",
    "tuples": "lists",
    "functions": "recursion",
    "algorithms": "sorting",
    "basics": "arithmetic",
    "data": "dicts",
    "applications": "lists",
}


def stable_int(*parts: Any, bits: int = 31) -> int:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()
    return int(digest, 16) % (1 << bits)


def heldout_families(families: list[str], fraction: float, seed: int) -> set[str]:
    """Families set aside for the held-out exercises: the ``fraction`` with the smallest seeded hash
    (at least one when fraction > 0, never all of them). Splitting by family means no prompt of a
    held-out family can occur in training: the split is disjoint by construction."""
    if fraction <= 0 or len(families) < 2:
        return set()
    count = min(len(families) - 1, max(1, round(fraction * len(families))))
    ranked = sorted(families, key=lambda f: stable_int(seed, "heldout", f, bits=64))
    return set(ranked[:count])


def snippet_window(text: str, max_chars: int, rng: random.Random) -> str:
    """A window of whole lines of at most ``max_chars`` characters from a random place in ``text``."""
    if max_chars <= 0 or not text:
        return ""
    lines = text.splitlines()
    start = rng.randrange(len(lines)) if len(lines) > 1 else 0
    out, size = [], 0
    for line in lines[start:]:
        if size + len(line) + 1 > max_chars:
            break
        out.append(line)
        size += len(line) + 1
    return "\n".join(out).strip("\n") or text[:max_chars]


def validation_row(seed: int, index: int, fraction: float) -> bool:
    """Whether train-family exercise ``index`` is set aside for validation (seeded, ~``fraction`` of them)."""
    return fraction > 0 and stable_int(seed, "validation", index, bits=32) < fraction * (1 << 32)


def concept_for_topic(area: str, topic: str, families: list[str], rng: random.Random) -> str:
    """One of ``families`` for a textbook on ``topic``: one of the topic's area when there is one."""
    concepts = all_concepts()
    area = AREA_ALIASES.get(area, area)
    matching = [f for f in families if concepts[f].area == area or concepts[f].area in topic]
    return rng.choice(matching or families)


def _topic_for(area: str, topics: list[Topic], rng: random.Random) -> Topic:
    aliases = {"classes": "oop"}
    matching = [t for t in topics if t.area == aliases.get(area, area)]
    return rng.choice(matching or topics)


def plan_rows(
    n_textbooks: int,
    n_exercises: int,
    audiences: list[str],
    styles: list[str],
    seed: int,
    heldout_fraction: float,
    snippets: list[str],
    snippet_chars: int,
    validation_fraction: float = 0.0,
) -> list[dict[str, Any]]:
    """One row per sample: textbooks first (each on a train family), then exercises (each tagged train,
    validation or heldout)."""
    topics, concepts = load_topics(), all_concepts()
    families = sorted(concepts)
    heldout = heldout_families(families, heldout_fraction, seed)
    train = [f for f in families if f not in heldout]
    rows: list[dict[str, Any]] = []
    for i in range(n_textbooks):
        rng = random.Random(stable_int(seed, "textbook", i, bits=64))
        topic = rng.choice(topics)
        snippet = snippet_window(rng.choice(snippets), snippet_chars, rng) if snippets else ""
        rows.append(
            {
                "key": f"textbook-{i:07d}",
                "kind": "textbook",
                "topic": topic.topic,
                "subtopic": rng.choice(topic.subtopics),
                "audience": rng.choice(audiences),
                "style": rng.choice(styles),
                "seed": stable_int(seed, "textbook-seed", i),
                "concept": concept_for_topic(topic.area, topic.topic, train, rng),
                "difficulty": 0,
                "split": "train",
                "snippet": snippet,
            }
        )
    for i in range(n_exercises):
        rng = random.Random(stable_int(seed, "exercise", i, bits=64))
        family = rng.choice(families)
        topic = _topic_for(concepts[family].area, topics, rng)
        rows.append(
            {
                "key": f"exercise-{i:07d}",
                "kind": "exercise",
                "topic": topic.topic,
                "subtopic": rng.choice(topic.subtopics),
                "audience": rng.choice(audiences),
                "style": rng.choice(styles),
                "seed": stable_int(seed, "exercise-seed", i),
                "concept": family,
                "difficulty": rng.randint(1, 3),
                "split": "heldout"
                if family in heldout
                else "validation"
                if validation_row(seed, i, validation_fraction)
                else "train",
                "snippet": "",
            }
        )
    return rows


def request_for(row: dict[str, Any]) -> Request:
    explain = all_concepts()[row["concept"]].explain if row["concept"] else ""
    if row["kind"] == "textbook":
        return textbook_request(
            row["key"],
            row["topic"],
            row["subtopic"],
            row["audience"],
            row["style"],
            row["snippet"] or None,
            int(row["seed"]),
            row["concept"],
            explain,
        )
    return exercise_request(
        row["key"],
        row["concept"],
        explain,
        row["topic"],
        row["audience"],
        row["style"],
        int(row["difficulty"]),
        int(row["seed"]),
    )
