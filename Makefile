# Everything a fresh machine needs is installed from here: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-vtex demo-jumpseller test test-future lint soak bench bench-large contract-test clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m syncagent.demo

demo-vtex: $(STAMP)  # the same, with a VTEX store as a third channel
	DEMO_VTEX=1 $(BIN)/python -m syncagent.demo

demo-jumpseller: $(STAMP)  # a Jumpseller shop invoiced in Vendus: one sync, the invoices and credit notes
	$(BIN)/python -m syncagent.demo_jumpseller

lint: $(STAMP)
	$(BIN)/ruff check syncagent tests bench
	$(BIN)/bandit -q -r syncagent -ll

# Node (for the Prism contract test of the VTEX connector) is installed when npx is on the machine
NODE_STAMP := node_modules/.package-lock.json
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund

test: $(STAMP) lint $(if $(shell command -v npx 2>/dev/null),$(NODE_STAMP))
	$(BIN)/pytest -q

# the whole suite with the wall clock of every Python process (tests, simulators, agents) a year ahead:
# proves no test's outcome hangs on the day it runs (DAYS_AHEAD=730 for another offset)
DAYS_AHEAD ?= 365
test-future: $(STAMP) lint $(if $(shell command -v npx 2>/dev/null),$(NODE_STAMP))
	SYNCAGENT_CLOCK_AHEAD_DAYS=$(DAYS_AHEAD) PYTHONPATH=tests/clock_ahead $(BIN)/python -c \
	  "import datetime; print('tests run at', datetime.datetime.now().astimezone())"
	SYNCAGENT_CLOCK_AHEAD_DAYS=$(DAYS_AHEAD) PYTHONPATH=tests/clock_ahead $(BIN)/pytest -q -p no:cacheprovider

# every call of the VTEX and Jumpseller connectors through Stoplight Prism (validating proxy) against the vendors' own specs
contract-test: $(STAMP)
	npm ci --no-audit --no-fund
	$(BIN)/pytest -q -s tests/contract/

soak: $(STAMP)  # every crash point, 100 compound crashes, 1000 random kills, the long property runs
	SYNCAGENT_CRASH_STRIDE=1 SYNCAGENT_COMPOUND=100 $(BIN)/pytest -q tests/crash/test_crash_points.py \
	  tests/crash/test_vtex_intake.py -k "every_point or every_intake_point or compound"
	SYNCAGENT_CRASH_STRIDE=1 $(BIN)/pytest -q tests/crash/test_vendus_invoices.py
	$(BIN)/pytest -q -m slow tests/crash
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest -q tests/unit/test_malformed.py

bench: $(STAMP)  # 100k catalogue, alternating agent/floor runs; writes docs/benchmarks.md (< 15 min on 2 cores)
	$(BIN)/python -m bench

bench-large: $(STAMP)  # the 1M runs; writes their own section of docs/benchmarks.md
	$(BIN)/python -m bench --large

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo
