"""A small, real OpenAI-wire-format HTTP server for tests and benchmarks (127.0.0.1, ephemeral port).

    with FakeOpenAI(latency_s=0.1, rate_limit_rate=0.2, retry_after_s=0.05) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions. ``latency_jitter`` spreads
the latency uniformly (``latency_s`` x (1 +- j)), as a real LLM's answers vary. Failure injection:
``error_rate`` (500/503), ``rate_limit_rate`` (429 + ``Retry-After``), ``malformed_rate`` (200 with a
body that is not JSON), ``fail_first`` (the first N attempts of every distinct request get
``fail_status``: deterministic). Every request is logged (``server.log``, and appended + flushed to
``log_path`` as JSON lines when given, so a log survives the client being killed): ``hash`` is the
sha256 of the canonical request body, ``status`` what was sent (``aborted`` when the client hung up
first), ``peer`` the client's port (one per connection). ``responder(body) -> str`` makes the answer
text (default: procedural answers when phiray's procedural teacher can make them, else a fixed passage
with a code block).

Run standalone: ``python tests/fake_openai.py --port 0 --latency 0.1`` prints the base URL.
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

DEFAULT_TEXT = (
    "Lists keep items in order.\n\n```python\ndef first(items):\n    return items[0]\n```\n\n"
    "The function returns the first item."
)


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def cache_key(body: dict[str, Any]) -> str:
    """The key phiray's request cache stores this request's answer under (``request_hash`` of the model,
    api, messages/prompt, sampling params and seed the body carries): ties the log to the cache."""
    from phiray.teacher.base import Request, request_hash

    params = {k: v for k, v in body.items() if k not in ("model", "messages", "prompt", "seed")}
    request = Request(messages=body.get("messages"), prompt=body.get("prompt"), params=params, seed=body.get("seed"))
    return request_hash(body["model"], "chat" if "messages" in body else "completions", request, {})


def default_responder(body: dict[str, Any]) -> str:
    try:
        from phiray.teacher.procedural import answer_for_text
    except ImportError:
        return DEFAULT_TEXT
    if "messages" in body:
        text = "\n\n".join(str(m.get("content", "")) for m in body["messages"])
    else:
        text = str(body.get("prompt", ""))
    return answer_for_text(text, seed=body.get("seed")) or DEFAULT_TEXT


def canned_responder() -> Callable[[dict[str, Any]], str]:
    """One valid answer per prompt kind, made once: no per-request generation cost (for benchmarks)."""
    memo: dict[str, str] = {}

    def respond(body: dict[str, Any]) -> str:
        text = json.dumps(body.get("messages") or body.get("prompt"))
        kind = "exercise" if "exercise" in text else "textbook" if "textbook" in text else "other"
        if kind not in memo:
            memo[kind] = default_responder(body)
        return memo[kind]

    return respond


class FakeOpenAI:
    def __init__(
        self,
        latency_s: float = 0.0,
        latency_jitter: float = 0.0,
        error_rate: float = 0.0,
        rate_limit_rate: float = 0.0,
        malformed_rate: float = 0.0,
        retry_after_s: float | None = 0.05,
        fail_first: int = 0,
        fail_status: int = 429,
        error_status: int = 500,
        seed: int = 0,
        log_path: str | None = None,
        responder: Callable[[dict[str, Any]], str] | None = None,
        finish_reason: str = "stop",
    ):
        self.latency_s, self.error_rate, self.rate_limit_rate = latency_s, error_rate, rate_limit_rate
        self.latency_jitter = latency_jitter  # each answer waits latency_s x uniform(1 - j, 1 + j)
        self.malformed_rate, self.retry_after_s = malformed_rate, retry_after_s
        self.fail_first, self.fail_status, self.error_status = fail_first, fail_status, error_status
        self.responder = responder or default_responder
        self.finish_reason = finish_reason
        self.log: list[dict[str, Any]] = []
        self.log_path = log_path
        self._rng = random.Random(seed)
        self._jitter_rng = random.Random(seed + 1)  # apart, so jitter never changes the failure rolls
        self._lock = threading.Lock()
        self._attempts: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> "FakeOpenAI":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ----------------------------------------------------------------- log helpers
    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.log.append(entry)
            if self.log_path:
                with open(self.log_path, "a") as fh:
                    fh.write(json.dumps(entry) + "\n")
                    fh.flush()

    def answered(self) -> list[str]:
        """Hashes of requests that got a complete 200 answer, one per answer (repeats show twice)."""
        return [e["hash"] for e in self.log if e["status"] == 200 and e["outcome"] == "ok"]

    def statuses(self) -> Counter[Any]:
        return Counter(e["status"] for e in self.log)

    # ----------------------------------------------------------------- decisions
    def wait_s(self) -> float:
        if not self.latency_jitter:
            return self.latency_s
        with self._lock:
            roll = self._jitter_rng.uniform(-self.latency_jitter, self.latency_jitter)
        return max(0.0, self.latency_s * (1 + roll))

    def decide(self, h: str) -> str:
        """What this attempt gets: ok | rate_limit | error | malformed."""
        with self._lock:
            self._attempts[h] += 1
            attempt = self._attempts[h]
            roll = self._rng.random()
        if attempt <= self.fail_first:
            return "rate_limit" if self.fail_status == 429 else "error"
        if roll < self.rate_limit_rate:
            return "rate_limit"
        if roll < self.rate_limit_rate + self.error_rate:
            return "error"
        if roll < self.rate_limit_rate + self.error_rate + self.malformed_rate:
            return "malformed"
        return "ok"


def _usage(prompt_text: str, answer: str) -> dict[str, int]:
    p, c = max(1, len(prompt_text.split())), max(1, len(answer.split()))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog is fixed when the constructor calls listen(): it must be a class attribute. The
    # default (5) drops the SYNs of a burst of 32 new connections, which then wait ~1 s to retransmit.
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client reuses connections
    fake: FakeOpenAI

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle + the client's delayed ACK
        # add ~40 ms to every answer, which is not the latency the test asked for.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> bool:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:
        fake, t0 = self.fake, time.time()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, b'{"error": {"message": "bad json"}}')
            return
        h, chat = body_hash(body), self.path.endswith("/chat/completions")
        if not (chat or self.path.endswith("/completions")):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        outcome, wait = fake.decide(h), fake.wait_s()
        if wait:
            time.sleep(wait)
        status, headers = 200, {}
        if outcome == "rate_limit":
            status = 429
            if fake.retry_after_s is not None:
                headers["Retry-After"] = f"{fake.retry_after_s:g}"
            payload = b'{"error": {"message": "rate limited", "type": "rate_limit_error"}}'
        elif outcome == "error":
            status = fake.error_status
            if fake.retry_after_s is not None:
                headers["Retry-After"] = f"{fake.retry_after_s:g}"
            payload = b'{"error": {"message": "internal error", "type": "server_error"}}'
        elif outcome == "malformed":
            payload = b'{"id": "cmpl-x", "choices": [{"message": {"content": "trunc'
        else:
            payload = self._answer(body, chat)
        delivered = self._send(status, payload, headers)
        fake.record(
            {
                "t": t0,
                "path": self.path,
                "hash": h,
                "seed": body.get("seed"),
                "outcome": outcome,
                "status": status if delivered else "aborted",
                "latency_s": round(time.time() - t0, 4),
                "peer": self.client_address[1],
            }
        )

    def _answer(self, body: dict[str, Any], chat: bool) -> bytes:
        fake = self.fake
        answer = fake.responder(body)
        prompt_text = json.dumps(body.get("messages") or body.get("prompt") or "")
        common = {
            "id": "cmpl-" + body_hash(body)[:12],
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "usage": _usage(prompt_text, answer),
        }
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": fake.finish_reason,
                "logprobs": None,
            }
            return json.dumps({**common, "object": "chat.completion", "choices": [choice]}).encode()
        choice = {"index": 0, "text": answer, "finish_reason": fake.finish_reason, "logprobs": None}
        return json.dumps({**common, "object": "text_completion", "choices": [choice]}).encode()


def spawn(*args: str) -> tuple["subprocess.Popen[str]", str]:
    """The server in its own process (its CPU then never competes with the client's GIL): returns the
    process and its base URL. Extra ``args`` are this script's flags, e.g. ``"--latency", "0.1"``."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--latency-jitter", type=float, default=0.0, help="answers wait latency x uniform(1-j, 1+j)")
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--rate-limit-rate", type=float, default=0.0)
    p.add_argument("--malformed-rate", type=float, default=0.0)
    p.add_argument("--log", default=None)
    p.add_argument("--canned", action="store_true", help="answer each prompt kind with one fixed valid answer")
    args = p.parse_args()
    server = FakeOpenAI(
        latency_s=args.latency,
        latency_jitter=args.latency_jitter,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        malformed_rate=args.malformed_rate,
        log_path=args.log,
        responder=canned_responder() if args.canned else None,
    ).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
