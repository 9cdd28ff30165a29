# otaudit: every target bootstraps its own virtual environment from the
# pinned constraints, so a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit demo bench fuzz clean postgresql

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

run: $(STAMP)  ## Run otaudit serve on the embedded SQLite store (./otaudit-data)
	$(BIN)/otaudit serve

demo: $(STAMP)  ## The whole story in one command
	$(BIN)/otaudit demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

postgresql:  ## PostgreSQL server binaries for the throwaway test server (installed if missing)
	sh scripts/ensure-postgresql

# Test files run in parallel (one PostgreSQL per worker); a file's tests stay together.
unit: $(STAMP) postgresql
	$(BIN)/pytest -q -n auto --maxprocesses 4 --dist loadfile

test: lint typecheck unit  ## Everything CI runs

bench: $(STAMP) postgresql  ## Throughput and latency figures (printed, not asserted)
	$(BIN)/python -m bench

fuzz: $(STAMP)  ## The fuzz properties of tests/fuzz with 20,000 examples each (make test runs 100), and 50 random kills of a loaded server (make test: 10)
	OTAUDIT_FUZZ_PROFILE=fuzz $(BIN)/pytest -q tests/fuzz tests/e2e/test_crash.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
