# syntax=docker/dockerfile:1
# The MLflow tracking server (PostgreSQL backend, S3/MinIO artifacts) and the small MLflow client the
# service's init container uses to fetch a registered bundle (PYTHON_IMAGE: as in serve.Dockerfile).
# Build from the repository root:
#   docker build -f deploy/docker/mlflow.Dockerfile -t REGISTRY/bitzero-mlflow:3.17.2 .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:${PATH} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1
RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir "mlflow==3.17.2" "boto3==1.43.117" "psycopg[binary]==3.3.9" \
 && groupadd --system --gid 10001 mlflow \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin mlflow \
 && mkdir -p /models /var/lib/mlflow \
 && chown 10001:10001 /models /var/lib/mlflow
# /models (the fetched bundle) and /var/lib/mlflow (a local artifact store, deploy/compose.yaml) belong to
# the user, so named volumes mounted there start writable.
COPY deploy/docker/fetch_bundle.py /usr/local/bin/bitzero-fetch-bundle
USER 10001:10001
EXPOSE 5000
CMD ["mlflow", "--help"]
