# The one entry point: make run | test | lint | compose-check | bench
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
COMPOSE_VENV ?= .compose-venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint unit bench faults redis-plans compose-check test-servers browsers wrk clean

## run: serve on $PORT (default 8000). No Redis and no keys needed. .env, if present, fills in
## only what the environment leaves unset (gunicorn.conf.py and wsgi.py read it): PORT=8766 make run wins.
run: $(BIN)/.runtime-installed
	exec $(BIN)/gunicorn --config gunicorn.conf.py wsgi:app

## test: install everything the tests need (incl. Debian's redis-server and chromium), lint, validate
## compose, run pytest.
test: $(BIN)/.dev-installed test-servers browsers lint compose-check
	$(BIN)/pytest

## unit: only the fast tests, no servers.
unit: $(BIN)/.dev-installed
	$(BIN)/pytest tests/unit

## lint: ruff, and the import contract that holds the layers (pyproject.toml, [tool.importlinter]).
lint: $(BIN)/.dev-installed
	$(BIN)/ruff check quantpulse tests bench wsgi.py gunicorn.conf.py
	$(BIN)/lint-imports --no-cache

## bench: benchmarks with ratios against baselines measured in the same run (bench/results/latest.md).
bench: $(BIN)/.dev-installed test-servers wrk
	$(BIN)/python -m bench.run

## bench-streams: live quotes on one instance: SSE streams held, REST p99 beside them, memory per
## stream, upstream calls per window (bench/results/streams.md).
.PHONY: bench-streams
bench-streams: $(BIN)/.dev-installed test-servers wrk
	$(BIN)/python -m bench.streams

## bench-keys: cached quote throughput with a valid API key vs anonymous traffic under the same
## limit (RATE_LIMIT = the tier's), 4 gevent workers; the cached-hit path beside (bench/results/keys.md).
.PHONY: bench-keys
bench-keys: $(BIN)/.dev-installed test-servers wrk
	$(BIN)/python -m bench.keys

## redis-plans: connections and memory on a Heroku-mini-like redis-server (bench/results/redis-plans.md).
redis-plans: $(BIN)/.dev-installed test-servers
	$(BIN)/python -m bench.redis_plans

## faults: the fault suite under load (bench/results/faults.md).
faults: $(BIN)/.dev-installed test-servers
	$(BIN)/python -m bench.faults

wrk:
	@command -v wrk >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }

## compose-check: `docker-compose config` from docker-compose 1.29.2 (pip, own virtualenv).
compose-check: $(COMPOSE_VENV)/bin/docker-compose
	$(COMPOSE_VENV)/bin/docker-compose -f docker-compose.yml config -q && echo "docker-compose.yml: valid"

## test-servers: Debian's redis-server (and redis-cli), and openssl for the TLS test, when missing.
test-servers:
	@command -v redis-server >/dev/null && command -v redis-cli >/dev/null && command -v openssl >/dev/null || { \
		echo "installing redis-server and openssl from Debian's packages"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server redis-tools openssl; }

## browsers: Debian's chromium and chromium-driver for the browser test (tests/browser), when missing.
## Only from Debian's packages: Selenium is pointed at /usr/bin/chromedriver and never fetches one.
browsers:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		echo "installing chromium and chromium-driver from Debian's packages"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

$(BIN)/.runtime-installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(BIN)/.dev-installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $(BIN)/.runtime-installed $@

# docker-compose 1.29.2 needs PyYAML 5.4.1, which only builds on Python 3.11 with Cython < 3.
$(COMPOSE_VENV)/bin/docker-compose:
	$(PYTHON) -m venv $(COMPOSE_VENV)
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check "cython<3" wheel
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check --no-build-isolation pyyaml==5.4.1
	$(COMPOSE_VENV)/bin/pip install -q --disable-pip-version-check docker-compose==1.29.2

clean:
	rm -rf $(VENV) $(COMPOSE_VENV) .pytest_cache .ruff_cache
