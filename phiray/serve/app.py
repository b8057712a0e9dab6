"""The Ray Serve application: Ray Serve LLM (vLLM engine, OpenAI API) plus phiray's evaluator deployment.

Three ways to run it:
    phiray serve --model runs/tiny/finetune/model [--port 8000] [serve.max_batch_size=32 ...]
    serve run phiray.serve.app:build_app model=runs/tiny/finetune/model max_batch_size=32
    a Serve config / RayService: `import_path: phiray.serve.app:build_app` with `args: {model: ...}`
Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions (vLLM's OpenAI server behind
Ray Serve LLM's ingress: streaming, n, stop, logprobs, usage, seeds, ...), POST /v1/evaluate, GET /healthz.
Deployments: `openai` (the HTTP ingress, no CPU reserved), `model` (vLLM in a placement group), `evaluator`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray import serve

from phiray.config import SandboxConfig, ServeConfig, load_config

MODEL_DEPLOYMENT = "model"  # the name a RayService's `deployments:` overrides refer to
INGRESS_DEPLOYMENT = "openai"

# For checkpoints whose tokenizer ships no chat template (phiray's base and finetuned models): role-tagged
# turns with the assistant's turn left open, so /v1/chat/completions works on any code model.
DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] in ['system', 'developer'] %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n{% else %}Assistant: {{ m['content'] }}\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def resolve_args(args: dict[str, Any] | None) -> tuple[ServeConfig, SandboxConfig]:
    """Serve + sandbox settings from builder args: `config`/`preset` (a run config) then ServeConfig fields.

    Values may be strings (as `serve run ... key=value` passes them); dict fields accept JSON text.
    """
    args = dict(args or {})
    base = load_config(preset=args.pop("preset", None), config_file=args.pop("config", None))
    sandbox = args.pop("sandbox", None)
    if isinstance(sandbox, str):
        sandbox = json.loads(sandbox)
    for key in ("autoscaling", "engine_kwargs"):
        if isinstance(args.get(key), str):
            args[key] = json.loads(args[key])
    cfg = ServeConfig.model_validate({**base.serve.model_dump(), **args})
    if not cfg.model:
        raise ValueError("build_app needs model=<checkpoint directory>")
    if Path(cfg.model).exists():  # replicas may not share the driver's working directory
        cfg = cfg.model_copy(update={"model": str(Path(cfg.model).resolve())})
    sandbox_cfg = SandboxConfig.model_validate({**base.sandbox.model_dump(), **(sandbox or {})})
    return cfg, sandbox_cfg


def _has_chat_template(model_dir: str) -> bool:
    path = Path(model_dir)
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    config = path / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def engine_kwargs(cfg: ServeConfig) -> dict[str, Any]:
    """vLLM engine (and OpenAI frontend) arguments; `serve.engine_kwargs` wins over these."""
    kwargs: dict[str, Any] = {
        "dtype": cfg.dtype or ("bfloat16" if cfg.use_gpu else "float32"),
        "max_num_seqs": cfg.max_batch_size,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        # CUDA graphs pay off on a GPU; on CPU there are none and eager mode starts faster.
        "enforce_eager": not cfg.use_gpu,
    }
    if cfg.max_model_len:
        kwargs["max_model_len"] = cfg.max_model_len
    if Path(cfg.model).is_dir() and not _has_chat_template(cfg.model):
        kwargs["chat_template"] = DEFAULT_CHAT_TEMPLATE
    return {**kwargs, **cfg.engine_kwargs}


def llm_config(cfg: ServeConfig):
    """The Ray Serve LLM config of the model deployment (vLLM engine in its own placement group)."""
    from ray.serve.llm import LLMConfig

    if cfg.use_gpu:
        bundles = [{"GPU": 1, "CPU": cfg.model_num_cpus}] * cfg.tensor_parallel_size
        env: dict[str, str] = {}
    else:
        # Without explicit bundles Ray Serve LLM asks for a GPU and waits forever on a CPU cluster.
        bundles = [{"CPU": cfg.model_num_cpus}]
        env = {"VLLM_CPU_KVCACHE_SPACE": str(cfg.cpu_kv_cache_gib)}
    deployment: dict[str, Any] = {
        "max_ongoing_requests": cfg.max_ongoing_requests,
        # The replica actor only drives the engine: its CPUs are in the bundle,
        # not reserved twice (Ray Serve LLM adds the actor's num_cpus to it).
        "ray_actor_options": {"num_cpus": 0},
    }
    if cfg.autoscaling:
        deployment["autoscaling_config"] = cfg.autoscaling
    else:
        deployment["num_replicas"] = cfg.num_replicas
    return LLMConfig(
        model_loading_config={"model_id": cfg.model_name, "model_source": cfg.model},
        engine_kwargs=engine_kwargs(cfg),
        placement_group_config={"bundles": bundles},
        deployment_config=deployment,
        runtime_env={"env_vars": env} if env else None,
        # Per-step engine metrics over Ray's Prometheus port: worth their CPU on a GPU node, not
        # on a CPU engine that shares its cores with the HTTP path (benchmarks/serve.py).
        log_engine_metrics=cfg.use_gpu,
    )


def build_app(args: dict[str, Any] | None = None) -> serve.Application:
    """ingress (OpenAI API + /v1/evaluate + /healthz) -> model (vLLM) + evaluator (sandbox)."""
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.serve.llm import build_llm_deployment

    from phiray.serve.deployments import Evaluator
    from phiray.serve.ingress import ingress_class

    cfg, sandbox_cfg = resolve_args(args)
    llm = llm_config(cfg)
    model = build_llm_deployment(llm, override_serve_options={"name": MODEL_DEPLOYMENT})
    evaluator = Evaluator.options(
        num_replicas=cfg.evaluator_replicas,
        max_ongoing_requests=cfg.evaluator_max_ongoing,
        # sandbox.ray_resources ({evaluator: 1}) pins the replicas to the hardened evaluator group.
        ray_actor_options={"num_cpus": cfg.evaluator_num_cpus, "resources": dict(sandbox_cfg.ray_resources)},
    ).bind(sandbox_cfg)
    # The ingress only parses and forwards: no CPU reservation, so on 2 CPUs it is never left pending
    # beside the engine's bundle (RAY_ON_CPU.md).
    ingress = serve.deployment(
        ingress_class(),
        name=INGRESS_DEPLOYMENT,
        num_replicas=1,
        max_ongoing_requests=cfg.ingress_max_ongoing,
        ray_actor_options={"num_cpus": 0},
    )
    return ingress.bind(
        llm_deployments={cfg.model_name: model},
        model_cards={cfg.model_name: to_model_metadata(cfg.model_name, llm)},
        evaluator=evaluator,
        cfg=cfg,
    )
