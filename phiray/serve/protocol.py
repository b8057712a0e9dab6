"""OpenAI wire format: request models, error bodies, the chat template, SSE chunks. Plain Python, no Ray."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_STOP = 4  # OpenAI accepts up to 4 stop sequences
MAX_CHOICES = 128  # prompts x n per request


class OpenAIError(Exception):
    """An error answered as `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @classmethod
    def from_body(cls, body: dict[str, Any], status: int = 400) -> "OpenAIError":
        err = body["error"]
        return cls(status, err["message"], err.get("type", "invalid_request_error"), err.get("param"), err.get("code"))


class _Sampling(BaseModel):
    # Unknown fields (user, logit_bias, stream_options extras, ...) are accepted and ignored, as OpenAI does.
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str]:
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return [s for s in stops if s]

    def sampling(self, default_max_tokens: int, extra_stop: list[str] = ()) -> dict[str, Any]:
        """Keyword arguments for phiray.model.generate.SamplingParams."""
        return {"max_tokens": self.max_tokens or default_max_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "n": self.n, "seed": self.seed,
                "stop": list(self.stop or []) + [s for s in extra_stop if s not in (self.stop or [])]}

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v: str | list[str]) -> list[str]:
        prompts = [v] if isinstance(v, str) else v
        if not prompts:
            raise ValueError("prompt must not be empty")
        return prompts

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v: int | None) -> None:
        if v is not None:
            raise ValueError("logprobs are not supported by this server")
        return None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def sampling(self, default_max_tokens: int, extra_stop: list[str] = ()) -> dict[str, Any]:
        params = super().sampling(default_max_tokens, extra_stop)
        params["max_tokens"] = self.max_completion_tokens or self.max_tokens or default_max_tokens
        return params


class EvaluateRequest(BaseModel):
    """Either code + tests (+ entry_point), or a benchmark task id + the completion to append to its prompt."""

    model_config = ConfigDict(extra="forbid")
    code: str | None = None
    tests: str | None = None
    entry_point: str | None = None
    task_id: str | None = None
    completion: str | None = None
    timeout_s: float | None = Field(None, gt=0, le=300)

    @model_validator(mode="after")
    def _one_form(self) -> "EvaluateRequest":
        if self.task_id is None and (self.code is None or self.tests is None):
            raise ValueError("give code and tests, or task_id and completion")
        if self.task_id is not None and self.completion is None:
            raise ValueError("task_id needs a completion")
        return self


# A plain chat template for base/finetuned code models that ship none: role-tagged turns, the assistant's
# turn left open. "\nUser:" is added as a stop sequence so the model does not write the user's next turn.
CHAT_STOP = ["\nUser:"]


def render_chat(messages: list[ChatMessage], tokenizer: Any = None) -> tuple[str, list[str]]:
    """The prompt for a conversation and the stop sequences the template needs."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        turns = [{"role": m.role, "content": m.text()} for m in messages]
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True), []
    parts = []
    for m in messages:
        if m.role in ("system", "developer"):
            parts.append(f"{m.text()}\n\n")
        else:
            parts.append(f"{'User' if m.role == 'user' else 'Assistant'}: {m.text()}\n")
    return "".join(parts) + "Assistant:", CHAT_STOP


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(payload: dict[str, Any] | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def now() -> int:
    return int(time.time())
