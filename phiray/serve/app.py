"""The Ray Serve application: an OpenAI-compatible FastAPI ingress over the model and evaluator deployments.

Three ways to run it:
    phiray serve --model runs/tiny/finetune/model [--port 8000] [serve.max_batch_size=32 ...]
    serve run phiray.serve.app:build_app model=runs/tiny/finetune/model max_batch_size=32
    a Serve config / RayService: `import_path: phiray.serve.app:build_app` with `args: {model: ...}`
Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (stream: true -> SSE),
POST /v1/evaluate, GET /healthz.
"""


import json
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from phiray.config import SandboxConfig, ServeConfig, load_config
from phiray.serve.deployments import Evaluator, ModelServer
from phiray.serve.protocol import (ChatRequest, CompletionRequest, EvaluateRequest, OpenAIError, new_id, now, sse,
                                   usage)

api = FastAPI(title="phiray", description="OpenAI-compatible completions + sandboxed evaluation.")


@api.exception_handler(OpenAIError)
async def _openai_error(_: Request, err: OpenAIError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status)


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
    # OpenAI answers bad parameters and malformed JSON with 400, not FastAPI's 422.
    first = err.errors()[0] if err.errors() else {"msg": "invalid request", "loc": ()}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        message, param, code = "We could not parse the JSON body of your request.", None, "invalid_json"
    else:
        message, param, code = f"{'.'.join(loc) or 'body'}: {first['msg']}", ".".join(loc) or None, "invalid_value"
    return JSONResponse(OpenAIError(400, message, param=param, code=code).body(), status_code=400)


# Helpers the routes use are defined above the class: @serve.ingress snapshots the FastAPI app (and the
# globals its routes see) when the class is decorated.
def _sse(chunks: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`."""
    async def body() -> AsyncIterator[str]:
        try:
            async for chunk in chunks:
                yield sse(chunk)
        except Exception as err:  # noqa: BLE001 - headers are already sent: report in-band, then end
            yield sse(OpenAIError(500, f"generation failed: {err}", type="server_error").body())
        yield sse("[DONE]")

    return StreamingResponse(body(), media_type="text/event-stream")


def _text_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}


def _stream_usage(tokens: dict[tuple[int, int], tuple[int, int]], n: int) -> dict[str, int]:
    prompt = sum(p for (i, j), (p, _) in tokens.items() if j == 0)
    return usage(prompt, sum(c for _, c in tokens.values()))


@serve.deployment(name="openai")
@serve.ingress(api)
class OpenAIIngress:
    def __init__(self, model: DeploymentHandle, evaluator: DeploymentHandle, cfg: ServeConfig) -> None:
        self.model, self.evaluator, self.cfg = model, evaluator, cfg

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        return {"status": "ok", **(await self.model.info.remote())}

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        card = {"id": self.cfg.model_name, "object": "model", "created": 0, "owned_by": "phiray"}
        return {"object": "list", "data": [card]}

    @api.post("/v1/completions")
    async def completions(self, body: CompletionRequest):
        self._check_model(body.model)
        params = body.sampling(self.cfg.default_max_tokens)
        prompts: list[str] = body.prompt  # type: ignore[assignment]  # the validator made it a list
        echo = prompts if body.echo else [""] * len(prompts)
        if body.stream:
            return _sse(await self._completion_chunks(body, prompts, params, echo))
        result = await self._complete(prompts, params)
        choices, tokens = [], [0, 0]
        for i, per_prompt in enumerate(result):
            tokens[0] += per_prompt[0]["prompt_tokens"]
            for j, c in enumerate(per_prompt):
                tokens[1] += c["completion_tokens"]
                choices.append({"index": i * body.n + j, "text": echo[i] + c["text"], "logprobs": None,
                                "finish_reason": c["finish_reason"]})
        return {"id": new_id("cmpl"), "object": "text_completion", "created": now(), "model": body.model,
                "choices": choices, "usage": usage(*tokens)}

    @api.post("/v1/chat/completions")
    async def chat(self, body: ChatRequest):
        self._check_model(body.model)
        prompt, template_stop = await self.model.chat_prompt.remote([m.model_dump() for m in body.messages])
        params = body.sampling(self.cfg.default_max_tokens, template_stop)
        if body.stream:
            return _sse(await self._chat_chunks(body, prompt, params))
        [per_prompt] = await self._complete([prompt], params)
        choices = [{"index": j, "message": {"role": "assistant", "content": c["text"]}, "logprobs": None,
                    "finish_reason": c["finish_reason"]} for j, c in enumerate(per_prompt)]
        return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": now(), "model": body.model,
                "choices": choices,
                "usage": usage(per_prompt[0]["prompt_tokens"], sum(c["completion_tokens"] for c in per_prompt))}

    @api.post("/v1/evaluate")
    async def evaluate(self, body: EvaluateRequest):
        result = await self.evaluator.evaluate.remote(body.model_dump())
        if "error" in result:
            raise OpenAIError.from_body(result, result.get("status", 400))
        return result

    # ------------------------------------------------------------------ helpers

    def _check_model(self, name: str) -> None:
        if name != self.cfg.model_name:
            raise OpenAIError(404, f"The model `{name}` does not exist; this server has `{self.cfg.model_name}`.",
                              param="model", code="model_not_found")

    async def _complete(self, prompts: list[str], params: dict[str, Any]) -> list[list[dict[str, Any]]]:
        result = await self.model.complete.remote(prompts, params)
        if "error" in result:
            raise OpenAIError.from_body(result, result.get("status", 400))
        return result["choices"]

    async def _deltas(self, prompts: list[str], params: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        """The model's stream; a refusal is raised before the first chunk so it can still be a 4xx."""
        stream = self.model.options(stream=True).stream.remote(prompts, params)
        first = await stream.__anext__()
        if first and "error" in first[0]:
            raise OpenAIError.from_body(first[0], first[0].get("status", 400))

        async def rest() -> AsyncIterator[list[dict[str, Any]]]:
            yield first
            async for deltas in stream:
                yield deltas
        return rest()

    async def _completion_chunks(self, body, prompts, params, echo) -> AsyncIterator[dict[str, Any]]:
        cid, created = new_id("cmpl"), now()
        head = {"id": cid, "object": "text_completion", "created": created, "model": body.model}
        deltas = await self._deltas(prompts, params)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            tokens: dict[tuple[int, int], tuple[int, int]] = {}
            if any(echo):
                for i, text in enumerate(echo):
                    for j in range(body.n):
                        yield {**head, "choices": [_text_choice(i * body.n + j, text, None)]}
            async for step in deltas:
                for d in step:
                    tokens[d["prompt_index"], d["choice_index"]] = (d["prompt_tokens"], d["completion_tokens"])
                    index = d["prompt_index"] * body.n + d["choice_index"]
                    yield {**head, "choices": [_text_choice(index, d["text"], d["finish_reason"])]}
            if body.include_usage:
                yield {**head, "choices": [], "usage": _stream_usage(tokens, body.n)}
        return chunks()

    async def _chat_chunks(self, body, prompt, params) -> AsyncIterator[dict[str, Any]]:
        cid, created = new_id("chatcmpl"), now()
        head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": body.model}
        deltas = await self._deltas([prompt], params)

        async def chunks() -> AsyncIterator[dict[str, Any]]:
            tokens: dict[tuple[int, int], tuple[int, int]] = {}
            for j in range(body.n):  # OpenAI opens each choice with the role
                yield {**head, "choices": [{"index": j, "delta": {"role": "assistant", "content": ""},
                                            "logprobs": None, "finish_reason": None}]}
            async for step in deltas:
                for d in step:
                    tokens[0, d["choice_index"]] = (d["prompt_tokens"], d["completion_tokens"])
                    delta = {"content": d["text"]} if d["text"] or not d["finish_reason"] else {}
                    yield {**head, "choices": [{"index": d["choice_index"], "delta": delta, "logprobs": None,
                                                "finish_reason": d["finish_reason"]}]}
            if body.include_usage:
                yield {**head, "choices": [], "usage": _stream_usage(tokens, body.n)}
        return chunks()


def resolve_args(args: dict[str, Any] | None) -> tuple[ServeConfig, SandboxConfig]:
    """Serve + sandbox settings from builder args: `config`/`preset` (a run config) then ServeConfig fields.

    Values may be strings (as `serve run ... key=value` passes them); dict fields accept JSON text.
    """
    args = dict(args or {})
    base = load_config(preset=args.pop("preset", None), config_file=args.pop("config", None))
    sandbox = args.pop("sandbox", None)
    if isinstance(sandbox, str):
        sandbox = json.loads(sandbox)
    if isinstance(args.get("autoscaling"), str):
        args["autoscaling"] = json.loads(args["autoscaling"])
    cfg = ServeConfig.model_validate({**base.serve.model_dump(), **args})
    if not cfg.model:
        raise ValueError("build_app needs model=<checkpoint directory>")
    if Path(cfg.model).exists():  # replicas may not share the driver's working directory
        cfg = cfg.model_copy(update={"model": str(Path(cfg.model).resolve())})
    sandbox_cfg = SandboxConfig.model_validate({**base.sandbox.model_dump(), **(sandbox or {})})
    return cfg, sandbox_cfg


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """The Serve application: ingress -> model (batched) + evaluator (sandbox), each with its own resources."""
    cfg, sandbox_cfg = resolve_args(args)
    model_options: dict[str, Any] = {
        "max_ongoing_requests": max(cfg.max_ongoing_requests, cfg.max_batch_size),
        "ray_actor_options": {"num_cpus": cfg.model_num_cpus, "num_gpus": 1 if cfg.use_gpu else 0},
    }
    if cfg.autoscaling:
        model_options["autoscaling_config"] = cfg.autoscaling
    else:
        model_options["num_replicas"] = cfg.num_replicas
    model = ModelServer.options(**model_options).bind(cfg)
    evaluator = Evaluator.options(
        num_replicas=cfg.evaluator_replicas, max_ongoing_requests=cfg.evaluator_max_ongoing,
        # sandbox.ray_resources ({evaluator: 1}) pins the replicas to the hardened evaluator group.
        ray_actor_options={"num_cpus": cfg.evaluator_num_cpus,
                           "resources": dict(sandbox_cfg.ray_resources)}).bind(sandbox_cfg)
    # The ingress only parses and forwards: no CPU reservation, so it never competes for a slot.
    return OpenAIIngress.options(max_ongoing_requests=cfg.ingress_max_ongoing,
                                 ray_actor_options={"num_cpus": 0}).bind(model, evaluator, cfg)
