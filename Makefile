# aiocelery — `make demo` sets everything up and runs GoCelery's example; `make test` runs the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: all install redis rabbitmq demo test test-quick lint format mypy bench bench-full bench-vs bench-vs-amqp soak clean

all: lint mypy test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python redis rabbitmq
	$(BIN)/pip install -q -e '.[dev]'

# A redis-server binary for the demo and the tests (they start their own on free ports).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt-get)"; \
	  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null 2>&1 || \
	  (sudo apt-get update -qq && sudo apt-get install -y -qq redis-server) >/dev/null 2>&1 || \
	  echo "could not install redis-server: the demo falls back to memory://, Redis tests will fail"; }

# RabbitMQ on 127.0.0.1:5672 (guest/guest) for the AMQP broker's tests and the benchmark: one server per
# machine (tests/vhosts.py gives each test a vhost of its own). Nothing to do when something
# already answers AMQP there; otherwise install Debian's rabbitmq-server if missing, start it, wait.
RABBITMQ_WAIT_S := 60
AMQP_PROBE := $(PY) -c 'import socket, sys; s = socket.create_connection(("127.0.0.1", 5672), 2); s.settimeout(2); s.sendall(b"AMQP\0\0\x09\x01"); sys.exit(s.recv(1) != b"\x01")' >/dev/null 2>&1
rabbitmq:
	@PATH="$$PATH:/usr/sbin:/sbin"; \
	if $(AMQP_PROBE); then exit 0; fi; \
	if ! command -v rabbitmq-server >/dev/null 2>&1; then \
	  echo "rabbitmq: installing rabbitmq-server (apt-get)"; \
	  (apt-get update -qq && apt-get install -y -qq rabbitmq-server) >/dev/null 2>&1 || \
	  (sudo -n apt-get update -qq && sudo -n apt-get install -y -qq rabbitmq-server) >/dev/null 2>&1 || true; \
	fi; \
	if ! command -v rabbitmq-server >/dev/null 2>&1; then \
	  echo "make rabbitmq: FAILED: rabbitmq-server is not installed and apt-get install rabbitmq-server failed" \
	       "(as root and with sudo). Install it, or start a RabbitMQ on 127.0.0.1:5672 with user guest/guest:" \
	       "the RabbitMQ tests fail without it." >&2; \
	  exit 1; \
	fi; \
	if ! $(AMQP_PROBE); then \
	  echo "rabbitmq: starting rabbitmq-server"; \
	  timeout 180 service rabbitmq-server start >/dev/null 2>&1 || \
	  timeout 180 sudo -n service rabbitmq-server start >/dev/null 2>&1 || \
	  rabbitmq-server -detached >/dev/null 2>&1 || sudo -n rabbitmq-server -detached >/dev/null 2>&1 || true; \
	  if command -v rabbitmqctl >/dev/null 2>&1; then \
	    timeout $$(($(RABBITMQ_WAIT_S) + 5)) rabbitmqctl -q await_startup --timeout $(RABBITMQ_WAIT_S) >/dev/null 2>&1 || true; \
	  fi; \
	  waited=0; \
	  until $(AMQP_PROBE); do \
	    if [ $$waited -ge $(RABBITMQ_WAIT_S) ]; then \
	      echo "make rabbitmq: FAILED: rabbitmq-server is installed but nothing answers AMQP on 127.0.0.1:5672" \
	           "after $(RABBITMQ_WAIT_S) s (tried: service rabbitmq-server start, rabbitmq-server -detached)." \
	           "Look at /var/log/rabbitmq/ and 'rabbitmq-diagnostics status'; the RabbitMQ tests fail without it." >&2; \
	      exit 1; \
	    fi; \
	    sleep 1; waited=$$((waited + 1)); \
	  done; \
	  echo "rabbitmq: rabbitmq-server answers on 127.0.0.1:5672"; \
	fi

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

# Against the peers, each installed from PyPI into ~/.cache/aiocelery-bench/venvs/<peer> (see bench/RESULTS.md):
# on Redis, then on RabbitMQ (Celery and dramatiq, and aiocelery's AMQP broker once it is in the tree).
bench-vs: install
	$(BIN)/python -m bench.run --full --vs arq,saq,taskiq,streaq,celery
	$(MAKE) bench-vs-amqp

# The RabbitMQ section alone: a vhost of its own on the machine's RabbitMQ (make rabbitmq), results in Redis.
bench-vs-amqp: install
	$(BIN)/python -m bench.run --full --rabbitmq --out .bench/amqp

# Tasks through SIGKILLed workers and kill -9'd Redis restarts (AOF always): nothing lost. Options: --help.
soak: install
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
