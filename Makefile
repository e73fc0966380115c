# Every target sets itself up: a virtualenv in .venv with the project installed, Azurite from npm.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# GitHub Actions passes --strict (every package must be audited); this machine's PyPI mirror serves no
# vulnerability data, so locally pip-audit can only report what it could check.
PIP_AUDIT_ARGS ?=

.PHONY: help setup browser demo test lint bench up down requirements clean dashboard

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(STAMP) node_modules/.package-lock.json  ## create .venv and install Python and npm dependencies

# The dashboard's browser test drives Debian's Chromium through Playwright (`playwright install` would
# download a browser, which this project never does). Skipped when CHROMIUM exists (CI points it at the
# runner's Chrome); installed with apt-get otherwise, through sudo unless we are root.
export CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium

browser: $(CHROMIUM)  ## install Debian's chromium for the dashboard's browser test (once, as root)

demo: setup  ## run the main job on embedded defaults (local PostgreSQL + Azurite)
	$(BIN)/totes demo

test: setup browser  ## run the test suite against real PostgreSQL and Azurite; coverage >= 90% overall, >= 80% per module
	mkdir -p .local
	# The fixtures' servers live under this checkout's own temp folder: pytest prunes older folders in the
	# shared /tmp/pytest-of-$$USER, which would stop the servers of another checkout's run mid-way.
	# Two workers (pytest-xdist), one per core, each with its own PostgreSQL and Azurite; -n 0 runs serially.
	$(BIN)/python -m pytest -n 2 --basetemp=.local/pytest --cov --cov-report=term --cov-report=json:.local/coverage.json $(PYTEST_ARGS)
	$(BIN)/python tests/coverage_floor.py .local/coverage.json

lint: setup  ## ruff, mypy, bandit, pip-audit
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared function_app.py bench
	$(BIN)/bandit -q -c pyproject.toml -r shared function_app.py
	$(BIN)/pip-audit --skip-editable --progress-spinner off $(PIP_AUDIT_ARGS)

bench: setup  ## benchmarks at --scale 100 (BENCH_SCALE=N to change)
	$(BIN)/python -m bench $(BENCH_ARGS)

dashboard: setup  ## the dashboard on the local stack's warehouse (or WAREHOUSE_DB_URL)
	$(BIN)/totes dashboard

up: setup  ## start the local stack; eval "$$(.venv/bin/totes up)" to use it
	$(BIN)/totes up

down: setup  ## stop the local stack
	$(BIN)/totes down

requirements: setup  ## regenerate requirements.txt (the Function App's build input) from pyproject.toml
	$(BIN)/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --output-file requirements.txt pyproject.toml

clean:  ## remove the venv, node_modules and local state
	-$(BIN)/totes down
	rm -rf $(VENV) node_modules .local
