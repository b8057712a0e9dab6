"""OpenAI-compatible teacher: the ``openai`` SDK (AsyncOpenAI) against any ``base_url``.

Bounded concurrency (a semaphore), per-request timeouts, and our own retry loop (the SDK's is turned
off) so that ``Retry-After`` on 429/5xx is honoured and every retry is counted by reason. Answers go to
the persistent :class:`RequestCache` as they arrive. The API key is read from the environment variable
the config names and is only ever handed to the SDK.

One teacher keeps one event loop (on a daemon thread), one HTTP client and one concurrency bound for its
whole life: connections (and TLS sessions) are reused from batch to batch, and ``complete`` may be called
from several threads at once (the synthesize stage overlaps two batches per actor), so the next batch's
requests take the slots that the slowest answers of the previous one leave idle.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import threading
import time
import weakref
from typing import Any, Callable, Coroutine

from phiray.teacher.base import Request, Response, new_stats, request_hash
from phiray.teacher.cache import RequestCache

log = logging.getLogger("phiray")
MAX_WAIT_S = 120.0  # never sleep longer than this on one Retry-After / backoff


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date), else None."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAITeacher:
    def __init__(self, cfg: Any, cache_dir: Any = None):
        self.cfg = cfg
        # A kill loses at most the answers not yet put: by count (default the concurrency) or time, whichever first.
        commit_every = cfg.cache_commit_every or cfg.concurrency
        self.cache = (
            RequestCache(cache_dir, flush_every=commit_every, flush_interval_s=cfg.cache_commit_s)
            if cache_dir
            else None
        )
        self.stats: dict[str, Any] = new_stats()
        self._stats_lock = threading.Lock()
        self.defaults = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens}
        price = cfg.prices.get(cfg.model)
        self._price = (price.input_per_million, price.output_per_million) if price else (0.0, 0.0)
        self._session = _Session(lambda: _make_client(cfg), cfg.concurrency)
        weakref.finalize(self, self._session.close)

    # ----------------------------------------------------------------- public
    def complete(self, requests: list[Request]) -> list[Response]:
        """Answer every request (cache first); failures come back as responses with ``error`` set.
        Thread-safe: concurrent calls share the client and the ``concurrency`` bound."""
        return self._session.run(self._complete_all(requests))

    def close(self) -> None:
        """Close the HTTP client and stop the loop (also done when the teacher is garbage-collected)."""
        self._session.close()
        if self.cache is not None:
            self.cache.close()

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self._price[0] + tokens_out * self._price[1]) / 1e6

    # ----------------------------------------------------------------- internals
    def _count(self, key: str, amount: float = 1, sub: str | None = None) -> None:
        with self._stats_lock:
            if sub is None:
                self.stats[key] = self.stats.get(key, 0) + amount
            else:
                bucket = self.stats.setdefault(key, {})
                bucket[sub] = bucket.get(sub, 0) + amount

    async def _complete_all(self, requests: list[Request]) -> list[Response]:
        self._count("requests", len(requests))
        if self.cache is not None:
            self.cache.reload()
        hashes = [request_hash(self.cfg.model, self.cfg.api, r, self.defaults) for r in requests]
        results: dict[str, Response] = {}
        todo: dict[str, Request] = {}
        for req, h in zip(requests, hashes):
            hit = self.cache.get(h) if self.cache is not None else None
            if hit is not None:
                results[h] = Response(
                    key="",
                    text=hit["text"],
                    tokens_in=hit.get("tokens_in", 0),
                    tokens_out=hit.get("tokens_out", 0),
                    cached=True,
                    finish_reason=hit.get("finish_reason"),
                )
            elif h not in todo:  # identical requests in one batch are sent once
                todo[h] = req
        self._count("cache_hits", sum(1 for h in hashes if h in results))
        if todo:
            client, semaphore = self._session.client_and_bound()
            answers = await asyncio.gather(*(self._one(client, semaphore, h, r) for h, r in todo.items()))
            results.update(zip(todo.keys(), answers))
            if self.cache is not None:
                self.cache.flush()  # an object store gets this batch's answers now, not at the next put
        out = []
        for req, h in zip(requests, hashes):
            base = results[h]
            resp = Response(**{**base.__dict__, "key": req.key})
            if resp.error:
                self._count("failures_by_reason", sub=resp.error)
            out.append(resp)
        return out

    async def _one(self, client: Any, semaphore: asyncio.Semaphore, h: str, req: Request) -> Response:
        async with semaphore:
            resp = await self._with_retries(client, req)
        if resp.ok:
            self._count("tokens_in", resp.tokens_in)
            self._count("tokens_out", resp.tokens_out)
            self._count("cost_usd", self.cost(resp.tokens_in, resp.tokens_out))
            if self.cache is not None:
                self.cache.put(
                    h,
                    {
                        "text": resp.text,
                        "tokens_in": resp.tokens_in,
                        "tokens_out": resp.tokens_out,
                        "finish_reason": resp.finish_reason,
                        "model": self.cfg.model,
                    },
                )
        return resp

    async def _with_retries(self, client: Any, req: Request) -> Response:
        import openai

        attempt, reason = 0, "unknown"
        while True:
            attempt += 1
            self._count("sent")
            retry_after = None
            try:
                resp = await self._send(client, req)
                resp.attempts = attempt
                return resp
            except openai.RateLimitError as err:
                reason, retry_after = "rate_limited", parse_retry_after(err.response.headers)
            except openai.InternalServerError as err:
                reason, retry_after = "server_error", parse_retry_after(err.response.headers)
            except openai.APITimeoutError:
                reason = "timeout"
            except openai.APIConnectionError:
                reason = "connection_error"
            except openai.APIStatusError as err:  # 4xx other than 429: retrying will not help
                return Response(key=req.key, text=None, error=f"http_{err.status_code}", attempts=attempt)
            except (openai.APIResponseValidationError, ValueError, KeyError, TypeError, AttributeError, IndexError):
                # 200 with a body that is not a completion (bad JSON, no choices): counted, dropped.
                return Response(key=req.key, text=None, error="malformed_body", attempts=attempt)
            if attempt > self.cfg.max_retries:
                return Response(key=req.key, text=None, error=reason, attempts=attempt)
            self._count("retries")
            self._count("retries_by_reason", sub=reason)
            await asyncio.sleep(self._delay(attempt, retry_after))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            self._count("retry_after_honoured")
            return min(MAX_WAIT_S, retry_after)
        # Exponential backoff with full jitter in [0.5, 1.5) x base * 2^(attempt-1).
        return min(MAX_WAIT_S, self.cfg.backoff_base_s * 2 ** (attempt - 1) * (0.5 + random.random()))

    async def _send(self, client: Any, req: Request) -> Response:
        """One HTTP call through the SDK (auth, headers, status errors with their headers). The body is
        sent as built here and the answer parsed with ``json``: the SDK's typed request transform and
        response models cost ~10 ms of CPU per call, which caps throughput at high concurrency."""
        params = {**self.defaults, **req.params}
        if req.seed is not None:
            params["seed"] = req.seed
        if self.cfg.api == "chat":
            messages = req.messages if req.messages is not None else [{"role": "user", "content": req.prompt or ""}]
            path, body = "/chat/completions", {"model": self.cfg.model, "messages": messages, **params}
        else:
            prompt = req.prompt if req.prompt is not None else req.text()
            path, body = "/completions", {"model": self.cfg.model, "prompt": prompt, **params}
        raw = await client.post(path, cast_to=_response_type(), body=body)
        data = json.loads(raw.content)  # ValueError on a malformed body
        choice = data["choices"][0]
        text = choice["message"]["content"] if self.cfg.api == "chat" else choice["text"]
        if not isinstance(text, str):
            raise ValueError("no text in the answer")
        usage = data.get("usage") or {}
        return Response(
            key=req.key,
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            finish_reason=choice.get("finish_reason"),
        )


class _Session:
    """A private event loop on a daemon thread, and the one HTTP client and concurrency bound that every
    ``complete`` call of a teacher shares (both are made lazily, on that loop)."""

    def __init__(self, make_client: Callable[[], Any], concurrency: int):
        self._make_client, self._concurrency = make_client, concurrency
        self._client: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="phiray-teacher", daemon=True)
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def client_and_bound(self) -> tuple[Any, asyncio.Semaphore]:
        """Called on the loop only (so no lock is needed)."""
        if self._client is None:
            self._client = self._make_client()
            self._semaphore = asyncio.Semaphore(self._concurrency)
        assert self._semaphore is not None
        return self._client, self._semaphore

    def close(self) -> None:
        with self._lock:
            loop, thread, client = self._loop, self._thread, self._client
            self._loop = self._thread = self._client = self._semaphore = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:  # collected on the loop itself: just stop it
            loop.call_soon_threadsafe(loop.stop)
            return
        if client is not None:
            try:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=10)
            except Exception:  # noqa: BLE001 - closing is best effort; the loop goes next anyway
                pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


def _make_client(cfg: Any) -> Any:
    import openai

    api_key = os.environ.get(cfg.api_key_env)
    if not api_key and cfg.base_url is None:
        log.warning("teacher: $%s is not set; OpenAI will refuse every request (http_401)", cfg.api_key_env)
    api_key = api_key or "unused"  # local OpenAI-compatible servers accept any key
    limits = _limits_type()(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=cfg.timeout_s)
    return openai.AsyncOpenAI(
        api_key=api_key, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout_s, http_client=http
    )


def _response_type() -> Any:
    """The raw-response class the installed SDK returns for ``cast_to`` (httpx2 in openai 3.x, else httpx)."""
    try:
        import httpx2

        return httpx2.Response
    except ImportError:  # older SDKs are built on httpx
        import httpx

        return httpx.Response


def _limits_type() -> Any:
    try:
        import httpx2

        return httpx2.Limits
    except ImportError:
        import httpx

        return httpx.Limits
