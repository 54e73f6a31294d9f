# Tollgate: `make run` starts everything and shows a purchase end to end; `make test` runs the suite.
# Both set up what they need on a fresh machine (uv, PostgreSQL, Kafka jars, stripe-mock).

SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
PY := .venv/bin/python
export UV_PYTHON_DOWNLOADS := never

.PHONY: run demo stop test test-unit lint typecheck check bootstrap status bench bench-usage bench-keys bench-ledger bench-transfers bench-freshness bench-e2e bench-stop image image-test

bootstrap: .venv/.synced

.venv/.synced: pyproject.toml uv.lock $(wildcard */pyproject.toml services/*/pyproject.toml)
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet --user "uv==0.13.9" \
		|| python3 -m pip install --quiet --user --break-system-packages "uv==0.13.9"
	$(UV) sync --frozen --python python3.11 --quiet
	@touch $@

run: bootstrap   ## start the whole system, show the demo, keep it up until Ctrl-C
	$(PY) -m tollgate_devstack run

demo: bootstrap  ## the demo, scripted; exit 0 only if every step succeeded
	$(PY) -m tollgate_devstack demo

stop:            ## stop a running stack
	$(PY) -m tollgate_devstack stop

status:
	$(PY) -m tollgate_devstack status

test: bootstrap  ## the whole suite against real Kafka, PostgreSQL, SMTP and the Stripe emulator
	$(PY) -m pytest

test-unit: bootstrap  ## only the tests that need nothing running
	$(PY) -m pytest -m unit

lint: bootstrap
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: bootstrap
	$(PY) -m mypy shared/src services/*/src devstack/src bench/src examples

check: lint typecheck test

bench: bench-usage bench-keys bench-ledger bench-transfers bench-freshness bench-e2e  ## every benchmark; each prints `bench: <name> <value> <unit>` lines

bench-usage: bootstrap  ## 1,000,000 usage records through Kafka into usage-sync's aggregator
	$(PY) -m tollgate_bench.usage

bench-ledger: bootstrap  ## usage burned from Kafka, transfers, and COPY of the same rows as the limit
	$(PY) -m tollgate_bench.ledger

bench-transfers: bootstrap  ## single transfers through the ledger's HTTP API, and pgbench of one transfer's statements
	$(PY) -m tollgate_bench.transfers

bench-keys: bootstrap   ## consuming validations through one keys process, and pgbench of the same statement
	$(PY) -m tollgate_bench.keys

bench-freshness: bootstrap  ## on a stack of all services: validate -> ledger.balances, and webhook -> key email, at 1,000 validations/s
	$(PY) -m tollgate_bench.freshness

bench-e2e: bootstrap  ## on a stack of all services: the highest validation rate held for 2 minutes with lag under 5 s
	$(PY) -m tollgate_bench.e2e

bench-stop:      ## stop the benchmarks' own PostgreSQL and Kafka (.stack-bench), which runs leave up for the next
	$(PY) -m tollgate_bench stop

image: bootstrap      ## the production image (docker, or podman on a base built from Debian's packages)
	$(PY) -m tollgate_devstack image

image-test: bootstrap ## build it, run every service's container against a local stack, run the demo against them
	$(PY) -m tollgate_devstack image-test
