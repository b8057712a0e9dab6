"""The install paths: `make install` and the Dockerfile pick the extras by machine and fail loudly without flash-attn.

No GPU is needed: the real Makefile recipe and the Dockerfile's real RUN line run with a fake ``nvidia-smi`` on
PATH and a recording ``pip``/``python`` (exit 1 on flash-attn when asked to), so the commands they would run on a
GPU machine, and their exit status when flash-attn cannot install, are checked as they are written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECORDER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_LOG"
case "$*" in *flash-attn*|*flash_attn*) [ "$FAKE_FLASH_FAILS" = 1 ] && { echo "fake: no wheel" >&2; exit 1; } ;; esac
exit 0
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _tools(tmp_path: Path, gpu: bool) -> tuple[Path, Path]:
    """(bin dir with the recording pip/python, dir to put first on PATH: a fake nvidia-smi when ``gpu``)."""
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name in ("pip", "python"):
        (venv_bin / name).write_text(RECORDER)
        (venv_bin / name).chmod(0o755)
    on_path = tmp_path / "path"
    on_path.mkdir()
    if gpu:
        (on_path / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3'\n")
        (on_path / "nvidia-smi").chmod(0o755)
    for name in ("sh", "bash", "basename", "touch", "cat", "env"):
        found = shutil.which(name)
        if found:
            (on_path / name).symlink_to(found)
    return venv_bin, on_path


def _make_install(tmp_path: Path, gpu: bool, flash_fails: bool = False, *args: str) -> tuple[int, str, list[str]]:
    venv_bin, on_path = _tools(tmp_path, gpu)
    log = tmp_path / "calls.log"
    env = {"PATH": str(on_path), "FAKE_LOG": str(log), "FAKE_FLASH_FAILS": "1" if flash_fails else "0"}
    make = shutil.which("make")
    done = subprocess.run(
        [make, "-C", str(REPO), "install", f"VENV={venv_bin.parent}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls


def test_make_install_on_a_gpu_machine_installs_flash_attn_then_the_gpu_extra(tmp_path):
    rc, out, calls = _make_install(tmp_path, gpu=True)
    assert rc == 0, out
    assert calls[0] == "pip install -q torch==2.13.0"  # the CUDA torch, not +cpu
    flash = next(i for i, c in enumerate(calls) if "flash-attn" in c)
    assert calls[flash] == "pip install -q --no-build-isolation -c constraints.txt flash-attn>=2.6"
    assert any("packaging psutil ninja" in c for c in calls[:flash])  # its build requirements first
    assert calls[flash + 1].startswith("python -c import flash_attn")  # installed *and* importable
    assert calls[flash + 2] == "pip install -q -c constraints.txt -e .[dev,tracking,gpu]"
    assert not any("uninstall" in c for c in calls)  # the CPU-only torchvision clean-up stays off
    assert (tmp_path / "venv" / ".installed").exists()


def test_make_install_fails_loudly_when_flash_attn_cannot_install(tmp_path):
    rc, out, calls = _make_install(tmp_path, gpu=True, flash_fails=True)
    assert rc != 0
    assert "error: flash-attn failed to install" in out and "NO_FLASH_ATTN=1" in out
    assert not any("-e .[" in c for c in calls)  # stopped there: no half-installed GPU venv
    assert not (tmp_path / "venv" / ".installed").exists()


def test_make_install_opt_out_accepts_sdpa(tmp_path):
    rc, out, calls = _make_install(tmp_path, True, True, "NO_FLASH_ATTN=1")
    assert rc == 0, out
    assert "training uses SDPA attention" in out
    assert not any("flash-attn" in c for c in calls)
    assert "pip install -q -c constraints.txt -e .[dev,tracking,cuda]" in calls


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a real nvidia-smi")
def test_make_install_without_a_gpu_installs_the_cpu_build(tmp_path):
    rc, out, calls = _make_install(tmp_path, gpu=False)
    assert rc == 0, out
    assert calls[0] == "pip install -q torch==2.13.0+cpu"
    assert "pip install -q -c constraints.txt -e .[dev,tracking,cpu]" in calls
    assert not any("flash-attn" in c for c in calls)


def _docker_extras_run() -> str:
    """The Dockerfile's RUN instruction that installs the package (continuation lines joined, as docker does)."""
    text = (REPO / "Dockerfile").read_text()
    runs = re.findall(r"^RUN (.*?)(?<!\\)$", text.replace("\\\n", "\\\u0000"), re.S | re.M)
    commands = [run.replace("\\\u0000", "\n") for run in runs]
    return next(c for c in commands if "flash-attn" in c or "FLASH_ATTN" in c)


def _docker_run(tmp_path: Path, with_flash: str, flash_fails: bool) -> tuple[int, str, list[str]]:
    venv_bin, on_path = _tools(tmp_path, gpu=True)
    log = tmp_path / "calls.log"
    text = (REPO / "Dockerfile").read_text()
    args = dict(re.findall(r'^ARG (\w+)="?([^"\n]*)"?$', text, re.M))
    env = {
        "PATH": f"{venv_bin}:{on_path}",
        "FAKE_LOG": str(log),
        "FAKE_FLASH_FAILS": "1" if flash_fails else "0",
        "TORCH_VERSION": args["TORCH_VERSION"],
        "FLASH_ATTN": args["FLASH_ATTN"],
        "WITH_FLASH_ATTN": with_flash,
    }
    script = textwrap.dedent(_docker_extras_run()).replace("\\\n", " ")
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, done.stdout + done.stderr, calls


def test_dockerfile_installs_flash_attn_and_the_gpu_extra(tmp_path):
    rc, out, calls = _docker_run(tmp_path, "1", flash_fails=False)
    assert rc == 0, out
    assert "pip install --no-build-isolation torch==2.13.0 flash-attn>=2.6" in calls
    assert calls.index("pip install --no-build-isolation torch==2.13.0 flash-attn>=2.6") < calls.index(
        "pip install torch==2.13.0 .[gpu,tracking]"
    )


def test_dockerfile_build_fails_when_flash_attn_cannot_install(tmp_path):
    rc, out, calls = _docker_run(tmp_path, "1", flash_fails=True)
    assert rc != 0 and "error: flash-attn" in out and "WITH_FLASH_ATTN=0" in out
    assert not any(".[" in c for c in calls)
    rc, out, calls = _docker_run(tmp_path / "optout", "0", flash_fails=True)
    assert rc == 0 and "pip install torch==2.13.0 .[cuda,tracking]" in calls and "SDPA" in out


def test_the_gpu_extra_declares_flash_attn_and_tracking_declares_mlflow():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("flash-attn") for d in extras["gpu"]) and "phiray[cuda]" in extras["gpu"]
    assert any(d.startswith("mlflow") for d in extras["tracking"])
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith("rich") for d in deps)  # nothing imports it
