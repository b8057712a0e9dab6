"""The HTTP ingress: Ray Serve LLM's OpenAI router, plus phiray's /v1/evaluate and /healthz routes.

Imports Ray Serve LLM (and so vLLM's protocol models): only `build_app` imports this module.
"""

from __future__ import annotations

from typing import Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from ray.llm._internal.serve.core.ingress.ingress import DEFAULT_ENDPOINTS, init, make_fastapi_ingress
from ray.serve.handle import DeploymentHandle
from ray.serve.llm.ingress import OpenAiIngress

from phiray.config import ServeConfig
from phiray.serve.evaluator_auth import check_evaluator_key, evaluator_api_key
from phiray.serve.protocol import EvaluateRequest, OpenAIError

# The generation routes of Ray Serve LLM's router; embeddings, scores and transcriptions are left out (a
# causal code model serves none of them).
GENERATION_ROUTES = ("models", "model_data", "completions", "chat", "tokenize", "detokenize")


class PhirayIngress(OpenAiIngress):
    """OpenAiIngress with the evaluator deployment beside the model."""

    def __init__(
        self,
        llm_deployments: dict[str, DeploymentHandle],
        model_cards: dict[str, Any],
        *,
        evaluator: DeploymentHandle,
        cfg: ServeConfig,
        lora_paths: dict[str, str] | None = None,
    ) -> None:
        super().__init__(llm_deployments, model_cards, lora_paths=lora_paths)
        self.evaluator = evaluator
        self.evaluator_key = evaluator_api_key(cfg)  # no key off loopback: the replica refuses to start

    async def healthz(self) -> JSONResponse:
        """200 when every model's engine answers its health check, else 503 naming the failure."""
        models = {}
        for model_id, handle in self._default_serve_handles.items():
            try:
                await handle.check_health.remote()
                models[model_id] = "ok"
            except Exception as err:  # noqa: BLE001 - reported, not raised: this is the health check
                models[model_id] = f"{type(err).__name__}: {err}"
        healthy = all(state == "ok" for state in models.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unhealthy", "engine": "vllm", "models": models},
            status_code=200 if healthy else 503,
        )

    async def evaluate(self, body: EvaluateRequest, authorization: str | None = Header(None)) -> JSONResponse:
        try:
            check_evaluator_key(self.evaluator_key, authorization)
        except OpenAIError as err:
            return JSONResponse(err.body(), status_code=err.status)
        result = await self.evaluator.evaluate.remote(body.model_dump())
        if "error" in result:
            err = OpenAIError.from_body(result, result.get("status", 400))
            return JSONResponse(err.body(), status_code=err.status)
        return JSONResponse(result)


async def _http_error(_: Request, err: Exception) -> JSONResponse:
    """Ray Serve LLM's router raises plain HTTPExceptions (e.g. an unknown model: 404), which FastAPI would
    answer as `{"detail": ...}`; clients of the OpenAI API expect its error object."""
    status = getattr(err, "status_code", 500)
    kind = "not_found_error" if status == 404 else "invalid_request_error" if status < 500 else "server_error"
    body = OpenAIError(
        status, str(getattr(err, "detail", err)), type=kind, code="model_not_found" if status == 404 else None
    ).body()
    return JSONResponse(body, status_code=status, headers=getattr(err, "headers", None))


def ingress_class() -> type:
    """PhirayIngress with its FastAPI routes (Ray Serve LLM's app: its OpenAI error handlers included)."""
    from starlette.exceptions import HTTPException

    app = init()
    app.add_exception_handler(HTTPException, _http_error)
    routes = {name: DEFAULT_ENDPOINTS[name] for name in GENERATION_ROUTES}
    routes["evaluate"] = lambda app: app.post("/v1/evaluate")
    routes["healthz"] = lambda app: app.get("/healthz")
    return make_fastapi_ingress(PhirayIngress, endpoint_map=routes, app=app)
