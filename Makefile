# mmkit developer commands. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow lint bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# Speech engines the tests use to make real test media (Debian/Ubuntu packages).
system-deps:
	@bash scripts/install-system-deps.sh

demo: setup
	$(BIN)/mmkit demo

# two workers, one file each at a time: the end-to-end files train in parallel
test: setup system-deps
	$(BIN)/pytest -q -n 2 --dist loadfile

test-slow: setup system-deps
	$(BIN)/pytest -q -n 2 --dist loadfile -m slow

lint: setup
	$(BIN)/ruff check mmkit tests examples scripts benchmarks

bench: setup
	$(BIN)/mmkit bench

clean:
	rm -rf runs .pytest_cache
