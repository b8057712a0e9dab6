"""The attack matrix of tests/sandbox_attacks.py, in namespaces mode, as the user running pytest and as an
ordinary user: when pytest runs as root, the matrix runs again in a child process as an unprivileged
account (created with useradd when missing) through setpriv, with an interpreter that account may run."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sandbox_attacks

REPO = Path(__file__).resolve().parents[1]
TEST_USER = os.environ.get("PHIRAY_SANDBOX_TEST_USER", "phiray-sandbox-test")


@pytest.fixture(scope="module")
def sandbox():
    sb = sandbox_attacks.make_sandbox()
    try:
        _ = sb.isolation
    except Exception as err:  # noqa: BLE001 - SandboxUnavailable: this kernel forbids user namespaces
        pytest.skip(f"namespaces unavailable: {err}")
    return sb


@pytest.mark.parametrize("attack", list(sandbox_attacks.ATTACKS))
def test_attack_as_the_caller(sandbox, attack):
    sandbox_attacks.ATTACKS[attack](sandbox)


def test_stopped_sweeper_in_rlimits_mode_as_root():
    """The fallback's sweeper (root only) against a daemon that SIGSTOPs every new process of its uid."""
    if os.geteuid() != 0:
        pytest.skip("the kill-everything-of-the-uid sweep exists only when the executor is root")
    from phiray.config import SandboxConfig
    from phiray.sandbox import Sandbox

    sb = Sandbox(SandboxConfig(isolation="rlimits", timeout_s=5.0, cpu_s=4, memory_mb=256, workers=2))
    sandbox_attacks.sweeper_stopped_or_hung(sb)


def ordinary_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(TEST_USER)


def as_user(user: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def interpreter_for(user: pwd.struct_passwd) -> str | None:
    """An interpreter of our version the account may execute (a venv under /root is out of its reach)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (
        getattr(sys, "_base_executable", None),
        sys.executable,
        shutil.which(version),
        f"/usr/bin/{version}",
        f"/usr/local/bin/{version}",
    ):
        probe = "import os, sys; assert os.access(getattr(sys, '_base_executable', sys.executable), os.X_OK)"
        if candidate and subprocess.run([*as_user(user), candidate, "-c", probe], capture_output=True).returncode == 0:
            return candidate
    return None


def ordinary_user_command(*args: str, timeout: float = 500) -> subprocess.CompletedProcess:
    """``python ARGS`` as the unprivileged account, this checkout and our site-packages on its path."""
    if os.geteuid() != 0:
        pytest.skip("pytest already runs as an ordinary user: test_attack_as_the_caller is that run")
    if not shutil.which("setpriv") or not shutil.which("useradd"):
        pytest.skip("setpriv/useradd missing: cannot run as an ordinary user")
    user = ordinary_user()
    python = interpreter_for(user)
    if python is None:
        pytest.skip(f"no python{sys.version_info.major}.{sys.version_info.minor} that {TEST_USER} may run")
    path = os.pathsep.join([str(REPO), *[p for p in sys.path if p.endswith("site-packages")]])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": path, "HOME": "/tmp", "LANG": "C.UTF-8"}
    # A checkout or venv inside a private home (e.g. /root, mode 0700) is out of the account's reach.
    probe = subprocess.run(
        [*as_user(user), python, "-c", "import phiray.sandbox, pydantic"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/tmp",
    )
    if probe.returncode != 0:
        pytest.skip(
            f"{TEST_USER} cannot read this checkout or its site-packages ({REPO}): "
            f"{probe.stderr.strip().splitlines()[-1:] or probe.returncode}"
        )
    return subprocess.run(
        [*as_user(user), python, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd="/tmp"
    )


def run_as_ordinary_user(*args: str) -> dict:
    """Run tests/sandbox_attacks.py as the unprivileged account; its JSON report."""
    out = ordinary_user_command(str(REPO / "tests" / "sandbox_attacks.py"), *args)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"sandbox_attacks.py did not run as {TEST_USER}: {out.stderr[-2000:]}"
    report = json.loads(lines[-1])
    assert report["uid"] == ordinary_user().pw_uid, report
    return report


@pytest.fixture(scope="module")
def results_as_ordinary_user():
    report = run_as_ordinary_user()
    assert report["isolation"] == "namespaces", report
    return report["results"]


@pytest.mark.parametrize("attack", list(sandbox_attacks.ATTACKS))
def test_attack_as_an_ordinary_user(results_as_ordinary_user, attack):
    assert results_as_ordinary_user[attack] == "ok", results_as_ordinary_user[attack]


def assert_humaneval(report: dict, tasks: int) -> None:
    assert report["tasks"] == tasks and report["canonical_passed"] == tasks, report
    assert report["none_passed"] == 0 and report["mix_pass_at_1"] == 0.5, report


def test_humaneval_subset_as_an_ordinary_user():
    assert_humaneval(run_as_ordinary_user("--humaneval", "20")["humaneval"], 20)


@pytest.mark.slow
def test_humaneval_all_164_as_an_ordinary_user():
    assert_humaneval(run_as_ordinary_user("--humaneval")["humaneval"], 164)


@pytest.mark.slow  # the default tier has it as root already: tests/test_evals.py
def test_humaneval_all_164_as_the_caller():
    assert_humaneval(sandbox_attacks.humaneval_acceptance(None), 164)


def test_containment_suite_as_an_ordinary_user():
    """tests/test_sandbox_containment.py and test_sandbox.py, namespaces mode, run by pytest as the account.
    (Their rlimits-mode half is root-only by nature: as an ordinary user the fallback's candidate has the
    caller's uid and may kill(-1) it; README "Evaluation and the sandbox".)"""
    out = ordinary_user_command(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rootdir={REPO}",
        "-k",
        "namespaces",
        str(REPO / "tests" / "test_sandbox_containment.py"),
        str(REPO / "tests" / "test_sandbox.py"),
    )
    assert out.returncode == 0 and " passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-3000:]
