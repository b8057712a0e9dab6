"""The teacher protocol: ``complete(requests) -> responses``, one response per request, in order.

A :class:`Request` is either chat ``messages`` or a completion ``prompt``; ``params`` holds sampling
overrides (temperature, top_p, max_tokens), ``seed`` is sent to the endpoint and hashed into the cache
key, ``key`` is the caller's opaque id (echoed back, never hashed) and ``meta`` carries hints an offline
teacher may use (task kind, concept family, difficulty) -- also never sent nor hashed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Request:
    key: str = ""
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        """The request as one string (chat messages concatenated): what an offline teacher reads."""
        if self.messages is not None:
            return "\n\n".join(str(m.get("content", "")) for m in self.messages)
        return self.prompt or ""


@dataclass
class Response:
    key: str
    text: str | None
    tokens_in: int = 0
    tokens_out: int = 0
    cached: bool = False
    error: str | None = None  # None on success, else a short reason: rate_limited, server_error, malformed_body, ...
    finish_reason: str | None = None  # "stop", "length" (truncated), ...
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


@runtime_checkable
class Teacher(Protocol):
    """Anything with ``complete``; ``stats`` is a JSON-able dict of counters for the manifest."""

    stats: dict[str, Any]

    def complete(self, requests: list[Request]) -> list[Response]: ...


def request_hash(model: str, api: str, request: Request, defaults: dict[str, Any]) -> str:
    """Cache key: everything that changes the answer (model, api, messages/prompt, params, seed)."""
    params = {**defaults, **request.params}
    payload = {
        "model": model,
        "api": api,
        "messages": request.messages,
        "prompt": request.prompt,
        "params": params,
        "seed": request.seed,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def new_stats() -> dict[str, Any]:
    return {
        "requests": 0,
        "sent": 0,
        "cache_hits": 0,
        "retries": 0,
        "retries_by_reason": {},
        "failures_by_reason": {},
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
        "retry_after_honoured": 0,
    }


def merge_stats(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Sum two stats dicts (nested dicts of counters are summed key by key)."""
    for key, value in part.items():
        if isinstance(value, dict):
            sub = total.setdefault(key, {})
            for k, v in value.items():
                sub[k] = sub.get(k, 0) + v
        elif isinstance(value, (int, float)):
            total[key] = total.get(key, 0) + value
    return total
