# The front door. `make demo` and `make test` work on a fresh machine with only Python and PyPI.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

demo: install
	$(BIN)/modelpvc demo --workdir demo

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m compileall -q src
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/verify_plan.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
