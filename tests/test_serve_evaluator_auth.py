"""The API key in front of /v1/evaluate: required off loopback, checked in constant time, never optional
by accident (phiray/serve/evaluator_auth.py)."""

from __future__ import annotations

import pytest

from phiray.config import ServeConfig
from phiray.serve.evaluator_auth import check_evaluator_key, evaluator_api_key, is_local
from phiray.serve.protocol import OpenAIError


def test_local_by_default_only_on_loopback(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert is_local(ServeConfig()) and is_local(ServeConfig(host="::1"))
    assert not is_local(ServeConfig(host="0.0.0.0"))
    assert is_local(ServeConfig(host="0.0.0.0", evaluator_local_only=True))
    assert not is_local(ServeConfig(evaluator_local_only=False))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")  # a RayService proxy listens on the pod IP
    assert not is_local(ServeConfig()) and is_local(ServeConfig(evaluator_local_only=True))


def test_refuses_to_start_off_loopback_without_a_key(monkeypatch):
    monkeypatch.delenv("PHIRAY_EVALUATOR_API_KEY", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert evaluator_api_key(ServeConfig()) is None  # local: open, as before
    with pytest.raises(RuntimeError, match="PHIRAY_EVALUATOR_API_KEY"):
        evaluator_api_key(ServeConfig(host="0.0.0.0"))
    with pytest.raises(RuntimeError, match="MY_KEY"):
        evaluator_api_key(ServeConfig(evaluator_local_only=False, evaluator_api_key_env="MY_KEY"))
    monkeypatch.setenv("MY_KEY", "  k3y  ")
    assert evaluator_api_key(ServeConfig(host="0.0.0.0", evaluator_api_key_env="MY_KEY")) == "k3y"


def test_the_key_is_checked_when_there_is_one():
    check_evaluator_key(None, None)
    check_evaluator_key("k3y", "Bearer k3y")
    check_evaluator_key("k3y", "bearer  k3y")
    for header in (None, "", "k3y", "Bearer", "Bearer k3", "Bearer k3y2", "Basic k3y", "Bearer \u00e9"):
        with pytest.raises(OpenAIError) as err:
            check_evaluator_key("k3y", header)
        assert err.value.status == 401 and err.value.code == "invalid_api_key"
