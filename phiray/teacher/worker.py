"""The per-batch work of the synthesize stage: prompt rows -> teacher -> parsed sample rows.

``GenerateBatch`` is a callable class for Ray Data ``map_batches`` (one teacher per actor, built once);
``verify_rows`` runs exercises through the sandbox. Both are plain Python, testable without Ray.
"""

from __future__ import annotations

import hashlib
from typing import Any

from phiray.config import SandboxConfig, TeacherConfig
from phiray.sandbox import Sandbox
from phiray.teacher.base import Response
from phiray.teacher.columns import ANSWER_COLUMNS, columns_of, rows_of
from phiray.teacher.plan import request_for
from phiray.teacher.prompts import parse_exercise, parse_textbook

SAMPLE_FIELDS = ("text", "prompt", "solution", "tests", "entry_point", "signature", "docstring")


def parse_response(
    row: dict[str, Any], text: str | None, finish_reason: str | None, error: str | None, textbook_min_chars: int = 200
) -> dict[str, Any]:
    """Merge the parsed answer into the prompt row; ``status`` ok|rejected, ``reason`` why not."""
    out = {
        **row,
        **{f: "" for f in SAMPLE_FIELDS},
        "status": "rejected",
        "reason": error or "",
        "raw": (text or "")[:4000],
        "verified": False,
        "verdict": "",
    }
    if error:
        return out
    if row["kind"] == "textbook":
        passage, reason = parse_textbook(text, finish_reason, min_chars=textbook_min_chars)
        if passage is None:
            return {**out, "reason": reason}
        return {**out, "text": passage, "status": "ok", "reason": ""}
    exercise, reason = parse_exercise(text, finish_reason)
    if exercise is None:
        return {**out, "reason": reason}
    exercise["text"] = exercise["prompt"] + exercise["solution"]
    return {**out, **exercise, "status": "ok", "reason": ""}


def text_id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class GenerateBatch:
    """Ray Data callable: a batch of prompt rows -> the same rows with the parsed answers."""

    def __init__(self, teacher_cfg: TeacherConfig, cache_dir: str | None, textbook_min_chars: int = 200):
        from phiray.teacher import make_teacher

        self.teacher = make_teacher(teacher_cfg, cache_dir)
        self.textbook_min_chars = textbook_min_chars

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        rows = rows_of(batch)
        responses = self.teacher.complete([request_for(r) for r in rows])
        return columns_of([sample_row(row, resp, self.textbook_min_chars) for row, resp in zip(rows, responses)])


def sample_row(row: dict[str, Any], resp: Response, textbook_min_chars: int) -> dict[str, Any]:
    """A prompt row + its teacher response -> the parsed sample row (with the response's accounting)."""
    parsed = parse_response(row, resp.text, resp.finish_reason, resp.error, textbook_min_chars)
    parsed.update(
        tokens_in=resp.tokens_in,
        tokens_out=resp.tokens_out,
        cached=resp.cached,
        attempts=resp.attempts,
        id=text_id(parsed["text"]) if parsed["text"] else "",
    )
    return parsed


def parse_answered(batch: Any, textbook_min_chars: int = 200) -> dict[str, list[Any]]:
    """Ray Data batch function for rows that already carry their answer (the vLLM teacher's
    :data:`~phiray.teacher.columns.ANSWER_COLUMNS`) -> parsed sample rows, like :class:`GenerateBatch`."""
    out = []
    for row in rows_of(batch):
        answer = {k: row.pop(k) for k in ANSWER_COLUMNS}
        row.pop("hash", None)
        cached = bool(answer["cached"])
        resp = Response(
            key=row["key"],
            text=answer["text"],
            tokens_in=int(answer["tokens_in"]),
            tokens_out=int(answer["tokens_out"]),
            cached=cached,
            error=answer["error"] or None,
            finish_reason=answer["finish_reason"] or None,
            attempts=0 if cached else 1,
        )
        out.append(sample_row(row, resp, textbook_min_chars))
    return columns_of(out)


def verify_rows(rows: list[dict[str, Any]], sandbox: Any) -> list[dict[str, Any]]:
    """Run each ok exercise's solution against its tests in the sandbox; record ``verified``/``verdict``."""
    todo = [r for r in rows if r["kind"] == "exercise" and r["status"] == "ok"]
    if todo:
        verdicts = sandbox.check_many(
            [{"code": r["prompt"] + r["solution"], "tests": r["tests"], "entry_point": r["entry_point"]} for r in todo]
        )
        for row, verdict in zip(todo, verdicts):
            row["verified"], row["verdict"] = bool(verdict.passed), str(verdict.status)
    return rows


class VerifyBatch:
    """Ray Data callable around :func:`verify_rows` (one sandbox pool per actor)."""

    def __init__(self, sandbox_cfg: SandboxConfig):
        self.sandbox = Sandbox(sandbox_cfg)

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        return columns_of(verify_rows(rows_of(batch), self.sandbox))
