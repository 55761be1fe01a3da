# Shipyard: every target sets up .venv from requirements.lock first (about 3 minutes on a fresh machine).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock setup.cfg pyproject.toml | cksum | cut -d' ' -f1)
DEMO_OUTPUT ?= demo-output
PYTEST_ARGS ?=

#: The demo's rollout: short intervals so its steps take seconds (a cluster's default interval is 30 s).
DEMO_ROLLOUT ?= {"policy": {"interval_s": 4, "min_requests": 5, "max_inconclusive": 8, "p99_max_s": 2.0, "p99_max_ratio": 5.0}}

.PHONY: venv tools demo test test-fast lint compile manifests check-manifests bench lock clean

venv: $(STAMP)

$(STAMP): requirements.lock setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock pip setuptools wheel
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

## tools: HAProxy and Prometheus from Debian for local canary rollouts (installed only when missing)
tools:
	@if { command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null && command -v prometheus >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing haproxy and prometheus (Debian packages) for local canary rollouts"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy prometheus >/dev/null; \
	else \
		echo "make: haproxy and prometheus are missing and cannot be installed here (apt-get as root is needed):" \
			"run 'sudo apt-get install haproxy prometheus'; until then local rollouts fail and their tests skip" >&2; \
	fi

## demo: the flagship end to end under kfp.local, twice: the first version becomes @champion, the second
## is rolled out beside it as a canary through every traffic step and promoted; prints where results are
demo: $(STAMP) tools
	$(VENV)/bin/shipyard run train_and_deploy --local --output $(DEMO_OUTPUT) --set 'rollout=$(DEMO_ROLLOUT)'
	@echo; echo "second run: the new version is rolled out as a canary beside @champion"; echo
	$(VENV)/bin/shipyard run train_and_deploy --local --output $(DEMO_OUTPUT) --set 'rollout=$(DEMO_ROLLOUT)'

## test: the whole test suite (unit, local pipeline runs, real HTTP serving, PostgreSQL when present, slow)
test: $(STAMP) tools
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
