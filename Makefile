# Shipyard: every target sets up .venv from requirements.lock first (about 3 minutes on a fresh machine).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
DEMO_OUTPUT ?= demo-output
PYTEST_ARGS ?=

.PHONY: venv demo test test-fast lint compile manifests check-manifests bench lock clean

venv: $(STAMP)

$(STAMP): requirements.lock setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock pip setuptools wheel
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## demo: run the flagship pipeline end to end under kfp.local and print where its results are
demo: $(STAMP)
	$(VENV)/bin/shipyard run train_and_deploy --local --output $(DEMO_OUTPUT)

## test: the whole test suite (unit, local pipeline runs, real HTTP serving, PostgreSQL when present, slow)
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## test-fast: no kfp.local run, no HTTP server, no PostgreSQL, no trained MLP (markers: tests/tiers.py)
test-fast: $(STAMP)
	$(PY) -m pytest -m "not local and not serving and not integration and not slow" $(PYTEST_ARGS)

## lint: ruff (lint and format check) and mypy
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## compile: KFP IR YAML for every pipeline into compiled/
compile: $(STAMP)
	$(VENV)/bin/shipyard compile --output compiled

## manifests: regenerate manifests/generated (committed; check-manifests fails when stale)
manifests: $(STAMP)
	$(VENV)/bin/shipyard manifests --output manifests/generated

check-manifests: manifests
	git diff --exit-code -- manifests/generated

## bench: side-by-side ratio benchmarks; results go to benchmarks/RESULTS.md by hand
bench: $(STAMP)
	$(PY) -m benchmarks.run

## lock: re-resolve requirements.lock from setup.cfg in a scratch venv
lock:
	rm -rf /tmp/shipyard-lock && $(PYTHON) -m venv /tmp/shipyard-lock
	/tmp/shipyard-lock/bin/pip install --quiet --upgrade pip setuptools wheel
	/tmp/shipyard-lock/bin/pip install --quiet -e '.[dev]'
	{ head -2 requirements.lock; /tmp/shipyard-lock/bin/pip freeze --all | grep -v -e '^-e ' -e '^shipyard' | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) $(DEMO_OUTPUT) compiled .pytest_cache
