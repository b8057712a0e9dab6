"""`phiray serve`: run the OpenAI-compatible Serve app in the foreground until SIGINT/SIGTERM.

phiray serve --model runs/tiny/finetune/model [--port 8000] [serve.max_batch_size=32 ...]
phiray serve --model PATH --emit-config serve.yaml     # a Serve config (import_path + args) for
                                                       # `serve deploy` / a RayService; nothing is started
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

import yaml

from phiray.config import load_config
from phiray.runtime import init_ray

log = logging.getLogger("phiray")

IMPORT_PATH = "phiray.serve.app:build_app"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="Checkpoint directory (HF save_pretrained + tokenizer); default: serve.model from the config.",
    )
    parser.add_argument("--preset", default=None, help="Preset whose serve/sandbox sections are the base.")
    parser.add_argument("--config", default=None, help="Run config YAML merged over the preset.")
    parser.add_argument("--host", default=None, help="Bind address (default serve.host, 127.0.0.1).")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default serve.port, 8000).")
    parser.add_argument("--name", default="phiray", help="Serve application name.")
    parser.add_argument(
        "--emit-config",
        metavar="FILE",
        default=None,
        help="Write a Serve config (import_path + args) to FILE ('-' for stdout) and exit.",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="a.b.c=value",
        help="Config overrides, e.g. serve.max_batch_size=32 sandbox.timeout_s=5.",
    )


def builder_args(args: argparse.Namespace) -> dict[str, Any]:
    """The `build_app` args for this command line: the resolved serve + sandbox sections."""
    cfg = load_config(preset=args.preset, config_file=args.config, overrides=args.overrides)
    serve_cfg = cfg.serve.model_dump(exclude_defaults=True)
    for key in ("model", "host", "port"):
        if getattr(args, key) is not None:
            serve_cfg[key] = getattr(args, key)
    sandbox = cfg.sandbox.model_dump(exclude_defaults=True)
    return {**serve_cfg, **({"sandbox": sandbox} if sandbox else {})}


def serve_config(args: dict[str, Any], name: str = "phiray") -> dict[str, Any]:
    """A Serve deploy config (what `serve build` writes for an Application) for the builder + args."""
    http = {"host": args.get("host", "127.0.0.1"), "port": int(args.get("port", 8000))}
    return {
        "http_options": http,
        "applications": [{"name": name, "route_prefix": "/", "import_path": IMPORT_PATH, "args": args}],
    }


def main(args: argparse.Namespace) -> int:
    build_args = builder_args(args)
    if not build_args.get("model"):
        print("phiray serve: give --model PATH (or serve.model=PATH)", file=sys.stderr)
        return 2
    if args.emit_config:
        text = yaml.safe_dump(serve_config(build_args, args.name), sort_keys=False)
        if args.emit_config == "-":
            sys.stdout.write(text)
        else:
            with open(args.emit_config, "w") as f:
                f.write(text)
        return 0
    return run_foreground(build_args, args.name)


# Ray Serve's throughput-optimised request path (the settings RAY_SERVE_THROUGHPUT_OPTIMIZED=1 turns on, less
# direct ingress, which would open replica HTTP ports beside the proxy): user code and routing on the replica's
# own event loop, buffered request-path logs, no per-request copy to stderr. The Ray processes `phiray serve`
# starts inherit them; a value already set wins. benchmarks/serve.py measures the app with them.
SERVE_THROUGHPUT_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_LOG_TO_STDERR": "0",
}


def run_foreground(build_args: dict[str, Any], name: str = "phiray") -> int:
    for key, value in SERVE_THROUGHPUT_ENV.items():
        os.environ.setdefault(key, value)
    from ray import serve

    from phiray.serve.app import build_app, resolve_args

    cfg, _ = resolve_args(build_args)  # fail on a bad argument before Ray starts
    init_ray()
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build_app(build_args), name=name, route_prefix="/")
    url = f"http://{cfg.host}:{cfg.port}"
    print(f"phiray serve: {cfg.model_name} ready at {url}/v1 (evaluator: {url}/v1/evaluate); Ctrl-C stops", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("phiray serve: shutting down")
    serve.shutdown()
    return 0
