# Two entry points for a fresh machine: `make demo` and `make test`. Each creates .venv if missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.merkit-installed

.PHONY: demo test test-all lint format bench catalog

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,ray,serve]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/merkit demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# The shipped model catalog (`merkit models` reads it without torch); a test fails when stale.
catalog: $(STAMP)
	$(BIN)/python -m merkit.catalog
