"""A closed-loop load generator for the OpenAI API: N clients, each sending its next request when the last
one is answered, for a fixed time. Used by benchmarks/serve.py and the Serve load test."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    concurrency: int
    elapsed_s: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)  # HTTP status -> count
    failures: list[str] = field(default_factory=list)  # transport errors, timeouts, malformed bodies
    completion_tokens: int = 0

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        if len(self.latencies_s) == 1:
            return self.latencies_s[0]
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.ok,
            "rps": round(self.requests_per_s, 2),
            "p50_ms": round(self.percentile(50) * 1000, 1),
            "p99_ms": round(self.percentile(99) * 1000, 1),
            "tokens_per_s": round(self.completion_tokens / self.elapsed_s, 1),
            "5xx": self.server_errors,
            "failures": len(self.failures),
        }


async def run_load(
    base_url: str,
    body: dict[str, Any],
    concurrency: int,
    duration_s: float,
    timeout_s: float = 120.0,
    path: str = "/v1/completions",
) -> LoadResult:
    """`concurrency` clients post `body` (prompt suffixed with the client/request number) until `duration_s`
    has passed; requests in flight at the deadline are awaited and counted (none is abandoned)."""
    import httpx

    result = LoadResult(concurrency, 0.0)
    deadline = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client(k: int, http: httpx.AsyncClient) -> None:
        i = 0
        while time.perf_counter() < deadline:
            payload = dict(body)
            if "prompt" in payload:
                payload["prompt"] = f"{payload['prompt']}# client {k} request {i}\n"
            i += 1
            start = time.perf_counter()
            try:
                r = await http.post(path, json=payload)
            except httpx.HTTPError as err:
                result.failures.append(f"{type(err).__name__}: {err}")
                continue
            result.statuses[r.status_code] = result.statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                try:
                    data = r.json()
                    result.completion_tokens += data["usage"]["completion_tokens"]
                    assert data["choices"], "no choices"
                except Exception as err:  # noqa: BLE001 - a 200 with a broken body is a dropped request
                    result.failures.append(f"malformed 200 body: {err}")
                    continue
                result.latencies_s.append(time.perf_counter() - start)

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as http:
        await asyncio.gather(*(client(k, http) for k in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result
