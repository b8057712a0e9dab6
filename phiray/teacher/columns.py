"""The columns the teacher's Ray Data stages share: a teacher's answer beside its prompt row, and the batch <-> rows
conversions of the callables (``vllm_teacher``'s lookup/store, ``worker``'s parse). Imports nothing of phiray's."""

from __future__ import annotations

from typing import Any

# What a teacher adds to a prompt row (error: "" = ok).
ANSWER_COLUMNS = ("text", "finish_reason", "tokens_in", "tokens_out", "cached", "error")


def rows_of(batch: Any) -> list[dict[str, Any]]:
    """A Ray Data batch (pandas or dict of arrays) -> list of row dicts."""
    if hasattr(batch, "to_dict"):
        return batch.to_dict("records")
    keys = list(batch)
    return [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]


def columns_of(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Row dicts -> a dict of columns (the first row's keys)."""
    keys = list(rows[0]) if rows else []
    return {k: [r.get(k) for r in rows] for k in keys}
