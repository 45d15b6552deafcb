# Two commands on a fresh clone: `make plan` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
STAMP := $(VENV)/.installed
# checkov in its own virtualenv: its pins conflict with the Pulumi SDK's (see requirements-checkov.in).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.PHONY: plan plan-all lint test integration bench-smoke clean lock

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The lock pins every transitive package with its hashes: a fresh clone installs exactly these.
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	@touch $(STAMP)

## lock: re-resolve the hashed lock files after editing a *.in file (needs the package index)
LOCK_VENV := .venv-lock
PIP_COMPILE := $(LOCK_VENV)/bin/python -m piptools compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
lock:
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet pip-tools==7.6.2
	# The dev lock is resolved first; the program's and the pack's locks take its versions, so
	# the tests run exactly what `pulumi up` and the policy pack install.
	$(PIP_COMPILE) --output-file requirements-dev.txt requirements-dev.in
	$(PIP_COMPILE) --constraint requirements-dev.txt --output-file requirements.txt requirements.in
	$(PIP_COMPILE) --constraint requirements-dev.txt --output-file policies/requirements.txt policies/requirements.in
	# checkov resolves alone: its pins conflict with the Pulumi SDK's (see requirements-checkov.in).
	$(PIP_COMPILE) --output-file requirements-checkov.txt requirements-checkov.in

$(CHECKOV_STAMP): requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements-checkov.txt
	@touch $(CHECKOV_STAMP)

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

## test: lint, then unit and whole-program tests under Pulumi's mock engine (checkov in its own venv)
test: lint $(CHECKOV_STAMP)
	CHECKOV=$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest

## integration: the real vLLM (CPU build) contract suite; installs vLLM into a cached venv once
integration: $(STAMP)
	$(PY) -m pytest -m integration tests/integration

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
