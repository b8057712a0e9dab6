"""The sandbox's API and verdicts, in both isolation modes (namespaces, forced rlimits fallback)."""

from __future__ import annotations

import logging

import pytest

from phiray.config import SandboxConfig
from phiray.sandbox import Sandbox, SandboxUnavailable, executor


@pytest.fixture(scope="module", params=["namespaces", "rlimits"])
def sandbox(request) -> Sandbox:
    sb = Sandbox(SandboxConfig(isolation=request.param, timeout_s=4, cpu_s=3, memory_mb=256, workers=2))
    if request.param == "namespaces" and sb.isolation != "namespaces":
        pytest.skip("namespaces unavailable on this machine")
    return sb


ADD = "def add(a, b):\n    return a + b\n"


def test_pass_fail_and_humaneval_check(sandbox):
    assert sandbox.check(ADD, "assert add(1, 2) == 3").status == "passed"
    v = sandbox.check(ADD, "assert add(1, 2) == 3\nassert add(2, 2) == 5\n")
    assert (v.passed, v.status) == (False, "failed")
    assert "AssertionError" in v.detail and "line 2" in v.detail
    check = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    assert sandbox.check(ADD, check, entry_point="add").passed
    assert not sandbox.check("def add(a, b):\n    return None\n", check, entry_point="add").passed


def test_exception_kinds_are_reported(sandbox):
    v = sandbox.check("def f():\n    raise KeyError('k')\n", "f()")
    assert v.status == "failed" and "KeyError" in v.detail
    v = sandbox.check("def f(:\n", "f()")
    assert v.status == "failed" and "SyntaxError" in v.detail
    v = sandbox.check("x = 1\n", "assert f() == 1", entry_point="f")
    assert v.status == "failed"


def test_values_cross_as_plain_data(sandbox):
    code = (
        "import collections\ndef f(xs):\n    xs.sort()\n    return collections.Counter(xs), (1, 2.5), {1, 2}, "
        "b'x', 3 + 4j, range(3), map(str, xs)\n"
    )
    tests = (
        "data = [3, 1, 2]\nc, t, s, b, z, r, m = f(data)\nassert data == [1, 2, 3]\nassert c == {1: 1, 2: 1, 3: 1}\n"
        "assert t == (1, 2.5) and s == {1, 2} and b == b'x' and z == 3 + 4j and r == range(3)\n"
        "assert list(m) == ['1', '2', '3']\n"
    )
    v = sandbox.check(code, tests)
    assert v.passed, v.detail


def test_candidate_classes_and_setup_objects(sandbox):
    code = (
        "class Node:\n    def __init__(self, v):\n        self.v, self.left = v, None\n"
        "def depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n"
    )
    tests = "root = Node(1)\nroot.left = Node(2)\nassert depth(root) == 2\nassert root.left.v == 2\n"
    assert sandbox.check(code, tests).passed


def test_pool_runs_in_parallel_and_counts(sandbox):
    jobs = [{"code": ADD, "tests": f"assert add({i}, 1) == {i + 1 if i % 2 else 0}"} for i in range(8)]
    verdicts = sandbox.check_many(jobs)
    assert [v.passed for v in verdicts] == [bool(i % 2) for i in range(8)]
    assert sandbox.stats.executions >= 8 and sandbox.stats.per_second > 0


def test_output_is_captured_and_capped(sandbox):
    v = sandbox.check("print('hello')\nimport sys\nsys.stdout.write('x' * 10_000_000)\n", "pass")
    assert v.passed and v.stdout.startswith("hello") and len(v.stdout) <= sandbox.cfg.max_output_bytes


def test_forced_fallback_warns_once_loudly(caplog, monkeypatch):
    monkeypatch.setitem(executor._PROBE, "ns", False)
    monkeypatch.setitem(executor._PROBE, "why", "test")
    with caplog.at_level(logging.WARNING, logger="phiray.sandbox"):
        sb = Sandbox(SandboxConfig(isolation="auto"))
        assert sb.isolation == "rlimits"
    assert sum("SANDBOX WARNING" in r.message for r in caplog.records) == 1
    with pytest.raises(SandboxUnavailable):
        _ = Sandbox(SandboxConfig(isolation="auto", refuse_without_namespaces=True)).isolation


@pytest.mark.parametrize("variable", ["RAY_ADDRESS", "KUBERNETES_SERVICE_HOST"])
def test_refuses_by_default_on_a_cluster(caplog, monkeypatch, variable):
    monkeypatch.setitem(executor._PROBE, "ns", False)
    monkeypatch.setitem(executor._PROBE, "why", "test")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv(variable, "10.0.0.1:6379")
    with pytest.raises(SandboxUnavailable, match="default on a cluster"):
        _ = Sandbox(SandboxConfig(isolation="auto")).isolation
    with caplog.at_level(logging.WARNING, logger="phiray.sandbox"):  # unisolated only when asked, loudly
        assert Sandbox(SandboxConfig(isolation="auto", refuse_without_namespaces=False)).isolation == "rlimits"
        assert Sandbox(SandboxConfig(isolation="rlimits")).isolation == "rlimits"
    assert sum("SANDBOX WARNING" in r.message for r in caplog.records) == 2
