"""The evaluator's wire format: its request model and OpenAI-shaped error bodies. Plain Python, no Ray.

(Generation requests are vLLM's OpenAI protocol, served through Ray Serve LLM: see phiray.serve.ingress.)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class OpenAIError(Exception):
    """An error answered as `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @classmethod
    def from_body(cls, body: dict[str, Any], status: int = 400) -> "OpenAIError":
        err = body["error"]
        return cls(status, err["message"], err.get("type", "invalid_request_error"), err.get("param"), err.get("code"))


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
