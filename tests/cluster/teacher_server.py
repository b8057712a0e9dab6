"""The rehearsal's LLM: tests/fake_openai.py's real OpenAI-wire server on 127.0.0.1, logging every request,
answering annotate's judge prompt with a score and every other prompt (synthesize's) procedurally.

Each logged request is tied to phiray's request-cache key (``fake_openai.cache_key``), so a test can tell, from the server's
log and the cache in the run dir, whether a request whose answer was already stored reached the server
again.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from fake_openai import FakeOpenAI, body_hash, cache_key, default_responder

from phiray.data import annotators

MODEL = "rehearsal-judge"
JUDGE_MARK = "Determine its educational value"


def judge(body: dict[str, Any]) -> str:
    """phi-1's educational-value judge, played by the heuristic annotator (so classify sees real labels);
    one document in eleven gets an answer with no score (annotate's rejected path)."""
    content = str(body["messages"][-1]["content"])
    code = content.split("```python\n", 1)[-1].rsplit("\n```", 1)[0]
    if int(hashlib.sha256(code.encode()).hexdigest(), 16) % 11 == 0:
        return "I would rather not rate this snippet."
    score, reason = annotators.heuristic_batch([code])[0]
    return f"Score: {score}\nReason: {reason}"


@dataclass
class TeacherServer:
    """The server, and the map from each logged request (``hash`` in its log) to phiray's cache key."""

    server: FakeOpenAI = field(default_factory=FakeOpenAI)  # replaced by the started one in :func:`start`
    keys: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, body: dict[str, Any]) -> str:
        # One answer made at a time: both responders parse Python, and CPython 3.11.7's ast.parse is not
        # safe in concurrent threads ("AST constructor recursion depth mismatch", fixed in 3.11.8).
        with self.lock:
            self.keys[body_hash(body)] = cache_key(body)
            text = str(body.get("messages") or body.get("prompt"))
            return judge(body) if JUDGE_MARK in text else default_responder(body)

    @property
    def overrides(self) -> tuple[str, ...]:
        """What every stage of the rehearsal passes: the LLM annotator and the OpenAI teacher on this server
        (speed-only fields aside, these are the hashed config a kill test must resume under)."""
        return (
            "annotate.annotator=llm",
            "classify.model=forest",
            "teacher.kind=openai",
            f"teacher.base_url={self.server.base_url}",
            f"teacher.model={MODEL}",
            "teacher.backoff_base_s=0.05",
        )

    def mark(self) -> int:
        """A position in the log: :meth:`answered_since` counts from it."""
        return len(self.server.log)

    def answered_since(self, mark: int) -> list[str]:
        """Cache keys of the requests answered (a complete 200) since ``mark``, one per answer."""
        with self.lock:
            return [self.keys[e["hash"]] for e in self.server.log[mark:] if e["status"] == 200 and e["outcome"] == "ok"]


def start(latency_s: float) -> TeacherServer:
    holder = TeacherServer()  # the responder is the holder's: the server is made after it
    holder.server = FakeOpenAI(latency_s=latency_s, latency_jitter=0.5, responder=holder.respond).start()
    return holder
