# otaudit: every target bootstraps its own virtual environment from the
# pinned constraints, so a fresh clone needs only python3 (3.11+), make and a Rust
# toolchain (cargo, from rustup) for the compiled core in core/.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORE   := $(VENV)/.core
CARGO  := cargo --quiet
CRATE  := --manifest-path core/Cargo.toml
PIP    := $(BIN)/pip --quiet --disable-pip-version-check
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: run test lint rust typecheck unit demo bench fuzz clean postgresql chromium

# The dependencies, and the package itself in editable mode (maturin builds the core).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt maturin
	$(PIP) install -c constraints.txt --no-build-isolation -e '.[dev]'
	touch $@

# The compiled core again whenever its sources change.
$(CORE): $(STAMP) core/Cargo.toml core/Cargo.lock $(shell find core/src -name '*.rs')
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

run: $(CORE)  ## Run otaudit serve on the embedded SQLite store (./otaudit-data)
	$(BIN)/otaudit serve

demo: $(CORE)  ## The whole story in one command
	$(BIN)/otaudit demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests bench

rust:  ## The core's formatting, lints (warnings are errors) and Rust tests
	$(CARGO) fmt $(CRATE) --check
	$(CARGO) clippy $(CRATE) --all-targets --features python -- -D warnings
	$(CARGO) test $(CRATE)

typecheck: $(CORE)
	$(BIN)/mypy

postgresql:  ## PostgreSQL server binaries for the throwaway test server (installed if missing)
	sh scripts/ensure-postgresql

chromium:  ## Debian's Chromium for the console's browser tests (installed if missing)
	sh scripts/ensure-chromium

# Test files run in parallel (one PostgreSQL per worker); a file's tests stay together.
unit: $(CORE) postgresql chromium
	$(BIN)/pytest -q -n auto --maxprocesses 4 --dist loadfile

test: lint rust typecheck unit  ## Everything CI runs

bench: $(CORE) postgresql  ## Throughput and latency figures (printed, not asserted)
	$(BIN)/python -m bench

fuzz: $(CORE)  ## The fuzz properties of tests/fuzz with 20,000 examples each (make test runs 100), and 50 random kills of a loaded server (make test: 10)
	OTAUDIT_FUZZ_PROFILE=fuzz $(BIN)/pytest -q tests/fuzz tests/e2e/test_crash.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache core/target src/otaudit/_core*.so
