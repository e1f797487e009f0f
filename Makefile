# aiocelery — `make demo` sets everything up and runs GoCelery's example; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: all install redis demo test test-quick lint format mypy bench bench-full bench-vs soak clean

all: lint mypy test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python redis
	$(BIN)/pip install -q -e '.[dev]'

# A redis-server binary for the demo and the tests (they start their own on free ports).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt-get)"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq redis-server) >/dev/null 2>&1 || \
	  echo "could not install redis-server: the demo falls back to memory://, Redis tests will fail"; }

demo: install
	$(BIN)/python examples/demo.py

test: install
	$(BIN)/pytest -q

# The quick loop: everything but the chaos suite (tests/chaos/, marked chaos). CI and `make test` run it all.
test-quick: install
	$(BIN)/pytest -q -m "not chaos"

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff check --fix .

mypy: install
	$(BIN)/mypy --strict aiocelery

# Benchmarks (bench/run.py; own redis-server on a free port). bench: quick, aiocelery only, < 3 min.
bench: install
	$(BIN)/python -m bench.run --quick

# Full sizes, 3 runs each, medians (min-max).
bench-full: install
	$(BIN)/python -m bench.run --full

# Against the peers, each installed from PyPI into ~/.cache/aiocelery-bench/venvs/<peer> (see bench/RESULTS.md).
bench-vs: install
	$(BIN)/python -m bench.run --full --vs arq,saq,taskiq,streaq,celery

# Tasks through SIGKILLed workers and kill -9'd Redis restarts (AOF always): nothing lost. Options: --help.
soak: install
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
