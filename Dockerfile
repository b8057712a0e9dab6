# The image every manifest in k8s/ runs (head, CPU, GPU and evaluator pods; RayJob submitters).
#   docker build -t ghcr.io/phiray/phiray:0.1.0 .      (then push it where your cluster pulls from)
# Base: Ray's GPU image (CUDA, conda Python 3.11, user `ray` uid 1000 / gid 100 — the pods run as
# that user: runAsNonRoot needs a numeric non-root uid). Keep RAY_VERSION equal to the cluster's
# rayVersion and to the ray the package was tested with.
ARG RAY_VERSION=2.60.0
FROM rayproject/ray:${RAY_VERSION}-py311-gpu

# Torch first and pinned on every later install, so nothing swaps in another build.
ARG TORCH_VERSION=2.13.0
# 1: install flash-attn (the `gpu` extra) and fail the build when it does not install; 0: no flash-attn,
# training uses PyTorch SDPA attention (the `cuda` extra).
ARG WITH_FLASH_ATTN=1
ARG FLASH_ATTN="flash-attn>=2.6"
ENV TOKENIZERS_PARALLELISM=false \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_TRAIN_V2_ENABLED=1 \
    PIP_NO_CACHE_DIR=1

# The manifests resolve `--config jobs/configs/*.yaml` under this directory (phiray.cluster.kuberay.IMAGE_ROOT).
WORKDIR /home/ray/phiray
RUN pip install "torch==${TORCH_VERSION}" && \
    DS_BUILD_OPS=0 pip install --no-build-isolation "torch==${TORCH_VERSION}" setuptools wheel deepspeed
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 phiray ./phiray
# `.[gpu]`: CUDA vLLM 0.32 (Serve LLM, Ray Data LLM teachers), which needs this torch exactly, and flash-attn,
# installed first as its README says (torch, packaging, psutil, ninja, then `--no-build-isolation`: its build
# imports torch; a prebuilt wheel for this torch/CUDA/Python is used when one exists). `tracking`: MLflow.
RUN if [ "${WITH_FLASH_ATTN}" = "1" ]; then \
      { pip install "torch==${TORCH_VERSION}" packaging psutil ninja && \
        pip install --no-build-isolation "torch==${TORCH_VERSION}" "${FLASH_ATTN}"; } || { \
        echo "error: flash-attn (${FLASH_ATTN}) did not install; build with --build-arg WITH_FLASH_ATTN=0 to train with SDPA" >&2; \
        exit 1; }; \
      extras=gpu,tracking; \
    else \
      echo "note: WITH_FLASH_ATTN=0: no flash-attn, training uses SDPA attention"; \
      extras=cuda,tracking; \
    fi && \
    pip install "torch==${TORCH_VERSION}" ".[${extras}]" && \
    python -c "import phiray.cli, ray, torch; print('phiray image:', ray.__version__, torch.__version__)"
COPY --chown=1000:100 jobs ./jobs

USER 1000:100
# KubeRay replaces the command with `ray start ...`; this default makes `docker run IMAGE` useful.
CMD ["phiray", "--help"]
