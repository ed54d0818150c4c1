# One task vocabulary for people, CI and Cloud Build.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test test-unit lint up down status bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "ChurnFlow needs Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) ## Create .venv and install ChurnFlow with every extra

demo: setup ## Run the whole loop locally on real emulators
	$(BIN)/churnflow demo

test: setup ## Run the full test suite (starts the local stack itself)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/data tests/model $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check shared functions tests bench
	$(BIN)/ruff format --check shared functions tests bench

up: setup ## Start the local emulator stack
	$(BIN)/churnflow local up

down: setup ## Stop the local emulator stack
	$(BIN)/churnflow local down

status: setup
	$(BIN)/churnflow local status

clean:
	-$(BIN)/churnflow local down
	rm -rf $(VENV) .churnflow .pytest_cache
