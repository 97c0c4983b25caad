# Everything a fresh machine needs is installed from here: `make demo`, `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint soak bench bench-large contract-test clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m syncagent.demo

lint: $(STAMP)
	$(BIN)/ruff check syncagent tests bench
	$(BIN)/bandit -q -r syncagent -ll

test: $(STAMP) lint
	$(BIN)/pytest -q

# every call of the VTEX connector through Stoplight Prism (validating proxy) against VTEX's own specs
contract-test: $(STAMP)
	npm ci --no-audit --no-fund
	$(BIN)/pytest -q -s tests/contract/

soak: $(STAMP)
	$(BIN)/pytest -q -m slow tests/crash
	HYPOTHESIS_PROFILE=soak $(BIN)/pytest -q tests/unit/test_malformed.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo
