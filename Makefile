# leadflow: the same targets for developers and CI (.ci/run calls `make test`).
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LOCKED := $(VENV)/.locked
STAMP := $(VENV)/.installed
# requirements/*.lock pin every distribution, transitively, with its hashes, for the platform that
# CI and the image run on; `make lock` writes them from pyproject.toml's pins with uv.
COMPILE = $(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes \
	--python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command 'make lock' $(if $(filter 1,$(UPGRADE)),--upgrade,)

.PHONY: help install lock run up down status test test-unit test-integration bench lint format clean image vendor

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# The dependencies, hash-checked: pip refuses a file whose hash the lock does not list, and a
# dependency that the lock lacks. First the lock's own pip (its lines cut out of the lock): it
# installs the rest twice as fast as the pip that venv brings.
$(LOCKED): requirements/dev.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "leadflow needs Python 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	sed -n '/^pip==/,/# via/p' requirements/dev.lock > $(VENV)/pip.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r $(VENV)/pip.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	@touch $@

# leadflow itself, with nothing fetched: no dependency resolution and no build environment
# (setuptools is in the lock). pip check then proves the lock meets leadflow's runtime pins.
$(STAMP): $(LOCKED) pyproject.toml
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check || { echo 'requirements/dev.lock differs from pyproject.toml: run `make lock`' >&2; exit 1; }
	@touch $@

install: $(STAMP) ## Create .venv and install leadflow and requirements/dev.lock (every file hash-checked)

# Order-only: a stale lock still installs (it is consistent in itself), and brings uv.
lock: | $(LOCKED) ## Rewrite requirements/*.lock from pyproject.toml's pins (UPGRADE=1: newest of the rest too)
	$(COMPILE) -o requirements/runtime.lock
	$(COMPILE) --extra dev -c requirements/runtime.lock -o requirements/dev.lock

run: $(STAMP) ## Start broker, PostgreSQL, the services, the console and demo traffic; Ctrl+C stops all
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

test: lint ## Lint, then every test against the real broker and PostgreSQL (but the slow cases)
	$(BIN)/pytest -q -m "not slow" --durations=20

.PHONY: test-reliability
test-reliability: $(STAMP) ## Chaos, scaling, bad input and security (tests/reliability, slow cases too)
	$(BIN)/pytest -q -s --durations=10 tests/reliability

.PHONY: test-slow
test-slow: $(STAMP) ## The slow cases make test leaves out (local stack robustness, scaling, chaos)
	$(BIN)/pytest -q -s --durations=10 -m slow

test-unit: $(STAMP) ## Only the pure unit tests (no broker, no database)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP) ## Only the integration tests
	$(BIN)/pytest -q tests/integration

CONSOLE_VENDOR := services/console/web/static/vendor
vendor: ## Re-vendor the console's chart library from the npm registry (integrity-checked by its lock)
	rm -rf .vendor-build && mkdir .vendor-build
	cp $(CONSOLE_VENDOR)/package.json $(CONSOLE_VENDOR)/package-lock.json .vendor-build/
	cd .vendor-build && npm ci --ignore-scripts --no-audit --no-fund
	cp .vendor-build/node_modules/chart.js/dist/chart.umd.min.js $(CONSOLE_VENDOR)/
	cp .vendor-build/node_modules/chart.js/LICENSE.md $(CONSOLE_VENDOR)/chart.js.LICENSE.md
	rm -rf .vendor-build

image: ## Build the container image with podman (local Debian base via debootstrap, see deploy/README.md)
	deploy/image/build.sh

bench: $(STAMP) ## Benchmarks on the real broker and PostgreSQL: prints a table, writes .bench/results.json
	$(BIN)/python -m bench $(SECTIONS)

clean: ## Remove the virtual environment and local stack state
	rm -rf $(VENV) .devstack .bench .mypy_cache .ruff_cache .pytest_cache
