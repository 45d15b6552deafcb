# Two commands on a fresh clone: `make plan` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
STAMP := $(VENV)/.installed

.PHONY: plan plan-all lint test integration bench-smoke clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

## plan: offline plan of one stack (STACK=dev by default), no cloud account needed
plan: $(STAMP)
	$(PY) -m offline.plan $(STACK)

## plan-all: offline plan of every committed stack
plan-all: $(STAMP)
	@for stack in $$(ls Pulumi.*.yaml | sed 's/Pulumi\.\(.*\)\.yaml/\1/'); do \
		$(PY) -m offline.plan $$stack > /dev/null && echo "planned $$stack" || exit 1; \
	done

## lint: ruff, then mypy (the same type check `pulumi preview` runs first; see Pulumi.yaml)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy .

## test: lint, then unit and whole-program tests under Pulumi's mock engine
test: lint
	$(PY) -m pytest

## integration: the real vLLM (CPU build) contract suite; installs vLLM into a cached venv once
integration: $(STAMP)
	$(PY) -m pytest -m integration tests/integration

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
