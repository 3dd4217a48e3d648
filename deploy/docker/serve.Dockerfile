# syntax=docker/dockerfile:1
# The companion service: FastAPI + onnxruntime, no torch, non-root. Build from the repository root:
#   docker build -f deploy/docker/serve.Dockerfile -t REGISTRY/bitzero-serve:0.1.0 .
#   docker build -f deploy/docker/serve.Dockerfile --build-arg ACCELERATOR=cuda -t REGISTRY/bitzero-serve:0.1.0-cuda .
# The CUDA variant swaps onnxruntime for onnxruntime-gpu with NVIDIA's CUDA 13 and cuDNN 9 wheels,
# so only the host's driver (>= 580, through the NVIDIA container toolkit) comes from outside.
# The model bundle is not in the image: the pod's init container fetches it from the MLflow registry.
# PYTHON_IMAGE is any Debian-like image with Python 3.11 and its venv module (the official python image,
# or Debian's python3 + python3-venv: deploy/README.md, "Without a registry"). Every stage installs into
# a venv, so a base whose Python is externally managed (Debian's) works as well as the official one.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# A wheelhouse, empty unless the build supplies one: `--build-context wheels=DIR` (docker buildx, podman)
# replaces this stage with DIR, e.g. a folder holding the CPU torch wheel when no index serves it.
FROM scratch AS wheels

# The sentence embedder (MiniLM, shipped offline by a PyPI package) is converted to ONNX once, here,
# with CPU torch; only the ONNX folder goes on to the service image. torch comes from the wheelhouse
# when it holds one, else from PyTorch's CPU index.
FROM ${PYTHON_IMAGE} AS embedder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:${PATH}
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN --mount=type=bind,from=wheels,target=/wheels \
    python3 -m venv /opt/venv \
 && if ls /wheels/torch-*.whl >/dev/null 2>&1; \
    then pip install --no-cache-dir --no-compile --find-links /wheels "torch==2.13.0"; \
    else pip install --no-cache-dir --no-compile --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"; fi \
 && pip install --no-cache-dir --no-compile "/src[train]" \
 && bitzero embedder export --out /opt/bitzero/embedder

FROM ${PYTHON_IMAGE} AS build
ARG ACCELERATOR=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir ".[serve]" \
 && if [ "${ACCELERATOR}" = "cuda" ]; then \
      /opt/venv/bin/pip uninstall --yes onnxruntime \
      && /opt/venv/bin/pip install --no-cache-dir "onnxruntime-gpu[cuda,cudnn]==1.31.1"; \
    fi \
 && if /opt/venv/bin/python -c "import torch" 2>/dev/null; then echo "torch must not be in the serving image" >&2; exit 1; fi

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    BITZERO_HOST=0.0.0.0 \
    BITZERO_PORT=8000 \
    BITZERO_SINGLE_USER=false \
    BITZERO_BUNDLE=/models/bundle \
    BITZERO_EMBEDDER=/opt/bitzero/embedder
COPY --from=build /opt/venv /opt/venv
COPY --from=embedder /opt/bitzero/embedder /opt/bitzero/embedder
COPY deploy/docker/healthcheck.py /usr/local/bin/bitzero-healthcheck
# The NVIDIA wheels keep their libraries under site-packages/nvidia/*/lib: register them with the
# dynamic loader (the CPU variant has none, and the file stays empty).
RUN find /opt/venv/lib/python3.11/site-packages/nvidia -maxdepth 3 -type d -name lib 2>/dev/null \
      > /etc/ld.so.conf.d/bitzero-nvidia.conf; \
    ldconfig \
 && groupadd --system --gid 10001 bitzero \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin bitzero \
 && mkdir -p /models /var/lib/bitzero \
 && chown 10001:10001 /models /var/lib/bitzero
USER 10001:10001
WORKDIR /var/lib/bitzero
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "/usr/local/bin/bitzero-healthcheck"]
ENTRYPOINT ["bitzero"]
CMD ["serve"]
