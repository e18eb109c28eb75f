# Two commands set everything up on a fresh machine:
#   make run   - create .venv, install, start the whole engine on embedded defaults with demo data
#   make test  - create .venv, install with test extras, start throwaway PostgreSQL + broker, run pytest
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: run test test-fast install lint clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "annostream needs Python >= 3.11 (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/annostream up --demo

test: install lint
	@bash ops/scripts/ensure-postgres.sh
	@bash ops/scripts/ensure-tools.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# Unit tests only: no PostgreSQL, no broker (SQLite variants still run): the fast local loop.
test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not services" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy engine consumers producers api
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_layers.py

clean:
	rm -rf $(VENV) data .pytest_cache
