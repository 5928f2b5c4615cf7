# HoneyMesh developer entry points; see the developers' guide.
#   make run    - services under .data/, demo tenant and tokens, hub on 127.0.0.1:8700
#   make test   - the whole suite (fixtures start throwaway PostgreSQL and Redis)
#   make lint   - ruff check, ruff format --check, mypy --strict
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv run test lint bench clean-data image prereqs-run prereqs-test

help:
	@echo "make run | test | lint | bench | venv | clean-data | image"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "No python3 found; install the Debian package python3 (3.11 or newer)." >&2; exit 1; fi
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	  "$(PYTHON) is Python %d.%d but HoneyMesh needs 3.11 or newer; install python3.11 or set PYTHON=." % sys.version_info[:2])'
	@if ! $(VPY) -m pip --version >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "Could not create $(VENV); install the Debian package python3-venv." >&2; exit 1; }; \
	fi
	$(VPY) -m pip install --quiet -e ".[hub,dev]"
	@touch $(STAMP)

# Before anything starts: one sentence naming the missing Debian packages, if any
# (deploy/debian-packages.txt is the list).
prereqs-run prereqs-test:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "No python3 found; install the Debian package python3 (3.11 or newer)." >&2; exit 1; fi
	@$(PYTHON) scripts/prereqs.py check $(@:prereqs-%=%)

run: prereqs-run venv
	$(VPY) scripts/devrun.py

test: prereqs-test venv
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: venv
	@if [ -f bench/__main__.py ]; then $(VPY) -m bench $(BENCH_ARGS); \
	elif [ -f bench/run.py ]; then $(VPY) bench/run.py $(BENCH_ARGS); \
	else echo "No benchmarks yet (bench/run.py is missing)."; fi

clean-data:
	@if [ -x $(VPY) ]; then py=$(VPY); else py="$(PYTHON)"; fi; \
	  $$py scripts/devservices.py clean
	rm -rf .data

# The container image, where a Docker daemon answers (none runs on the dev machines).
image:
	@if docker info >/dev/null 2>&1; then \
	  docker build -f deploy/Dockerfile -t honeymesh-hub:dev . && \
	  docker run --rm honeymesh-hub:dev --help >/dev/null && echo "image honeymesh-hub:dev built"; \
	else echo "No Docker daemon answers here; deploy/ is checked by make test (tests/deploy)."; fi
