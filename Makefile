# scimlink: two commands on a fresh machine — `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export SCIMLINK_DATA_DIR ?= $(CURDIR)/var/demo

.PHONY: demo test lint typecheck check postgres clean bench

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

## demo: both halves on embedded SQLite; a sample directory provisions into the app half; prints URLs and keys
demo: $(STAMP)
	$(BIN)/scimlink demo

## postgres: make sure a PostgreSQL server answers on 127.0.0.1:5432 (installs it if missing)
postgres:
	bash scripts/ensure-postgres

## test: lint, type-check and the whole suite on SQLite and PostgreSQL with branch coverage
test: $(STAMP) postgres
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	HYPOTHESIS_STORAGE_DIRECTORY=$(CURDIR)/.hypothesis $(BIN)/pytest -p no:cacheprovider --cov --cov-report=term $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

## bench: the load benchmark (see docs/benchmarks.md)
bench: $(STAMP) postgres
	$(BIN)/python benchmarks/scim_load.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .coverage .coverage.* .mypy_cache .ruff_cache .hypothesis
