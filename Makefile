# leadflow: the same targets for developers and CI (.ci/run calls `make test`).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install run up down status test test-unit test-integration bench lint format clean image

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "leadflow needs Python 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install leadflow with its pinned dependencies

run: $(STAMP) ## Start broker, PostgreSQL, the four services and demo traffic; Ctrl+C stops all
	$(BIN)/python -m devstack run

up: $(STAMP) ## The same stack in the background (DEMO=0 for no demo traffic)
	$(BIN)/python -m devstack up $(if $(filter 0,$(DEMO)),--no-demo,)

down: $(STAMP) ## Stop the stack (also one whose supervisor is gone; never another's process)
	$(BIN)/python -m devstack down

status: $(STAMP) ## Whether the stack runs, and what holds each of its ports
	$(BIN)/python -m devstack status

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## Format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint ## Lint, then every test against the real broker and PostgreSQL (but the slow reliability cases)
	$(BIN)/pytest -q -m "not slow"

.PHONY: test-reliability
test-reliability: $(STAMP) ## Chaos, scaling, bad input and security (tests/reliability, slow cases too)
	$(BIN)/pytest -q -s --durations=10 tests/reliability

test-unit: $(STAMP) ## Only the pure unit tests (no broker, no database)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) ## Only the integration tests
	$(BIN)/pytest -q tests/integration

image: ## Build the container image with podman (local Debian base via debootstrap, see deploy/README.md)
	deploy/image/build.sh

bench: $(STAMP) ## Benchmarks on the real broker and PostgreSQL: prints a table, writes .bench/results.json
	$(BIN)/python -m bench $(SECTIONS)

clean: ## Remove the virtual environment and local stack state
	rm -rf $(VENV) .devstack .bench .mypy_cache .ruff_cache .pytest_cache
