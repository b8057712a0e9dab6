"""The API key in front of `/v1/evaluate`: executing code on request is the most dangerous thing the
server does, so off loopback it needs a key, and without one the server refuses to start.

The key comes from the environment variable named by ``serve.evaluator_api_key_env`` (on Kubernetes, from
a Secret: k8s/ray-service.phiray.yaml); clients send ``Authorization: Bearer <key>``. With no key the
endpoint is open only when ``serve.evaluator_local_only`` says the server is local (by default: it binds
a loopback address and we are not in a Kubernetes pod).
"""

from __future__ import annotations

import os
import secrets

from phiray.config import ServeConfig
from phiray.serve.protocol import OpenAIError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_local(cfg: ServeConfig) -> bool:
    """Explicit config first; else loopback-bound and not in a pod (a RayService's proxy listens on the pod
    IP whatever serve.host says)."""
    if cfg.evaluator_local_only is not None:
        return cfg.evaluator_local_only
    return cfg.host in LOOPBACK and not os.environ.get("KUBERNETES_SERVICE_HOST")


def evaluator_api_key(cfg: ServeConfig) -> str | None:
    """The key requests must carry, or None (local server, no key). Raises at start-up when the server is
    not local and has no key: an open code-execution endpoint is never the default."""
    key = os.environ.get(cfg.evaluator_api_key_env, "").strip() or None
    if key is None and not is_local(cfg):
        raise RuntimeError(
            f"/v1/evaluate needs an API key: set ${cfg.evaluator_api_key_env} (e.g. from a "
            f"Secret), or serve.evaluator_local_only=true if this server (host {cfg.host}) "
            "is reachable only by trusted local clients"
        )
    return key


def check_evaluator_key(expected: str | None, authorization: str | None) -> None:
    """Raise a 401 unless ``authorization`` is ``Bearer <expected>`` (nothing to check without a key)."""
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected.encode()):
        raise OpenAIError(
            401,
            "/v1/evaluate needs `Authorization: Bearer <key>`",
            type="invalid_request_error",
            code="invalid_api_key",
        )
