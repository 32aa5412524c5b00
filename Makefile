# ResolutionFlow — the commands a developer and CI use. Only Python 3.11+ is needed up front.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= 2
# The fast tier waits on PostgreSQL, Redis and sockets more than it computes (its workers use
# about half of two cores' time): four processes on two cores finish it sooner than two.
UNIT_WORKERS ?= 4
# Bytecode is cached (in __pycache__, which git ignores) even where the environment turns it off:
# without it every test process, CLI call and server the suite starts compiles the project's
# modules again, and pytest rewrites every test module's asserts again (4 s of each worker's
# start-up).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-unit lint format migrate bench eval-notes clean install install-dev test-tools lock

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs come from the lock files (exact pins); pyproject.toml holds the ranges they satisfy.
$(VENV)/.installed: pyproject.toml requirements/run.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/run.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml requirements/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(VENV)/.installed $@

## lock: rewrite the lock files from pyproject.toml's ranges (existing pins kept where they fit;
## `make lock UPGRADE=1` moves every pin to the newest release in range)
LOCK_FLAGS := --quiet --strip-extras --no-emit-find-links --no-emit-index-url --no-emit-trusted-host \
	$(if $(UPGRADE),--upgrade,)
lock: install-dev
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra local --output-file requirements/run.txt pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra dev --extra local --output-file requirements/dev.txt pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra ops --output-file requirements/image.txt pyproject.toml

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: the whole stack (embedded PostgreSQL + Redis unless DATABASE_URL / REDIS_URL are set)
run: install
	$(BIN)/python -m app.devstack

## eval-notes: score the note generator over bench/eval/notes/ (offline without a key; the
## Messages API with ANTHROPIC_API_KEY, at ANTHROPIC_BASE_URL when set)
eval-notes: install
	$(BIN)/python -m bench.eval.notes_eval

## test: the whole suite against real PostgreSQL, Redis and Celery workers, every hypothesis
## property at its full example count
test: install-dev test-tools
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

## test-unit: the fast tier: everything but the `slow` tests (the folders tests/conftest.py names:
## tests/e2e, tests/deploy, tests/app, tests/services/hostile, the notes modules that run a Celery
## worker or real ticketing systems), in parallel, with the hypothesis `fast` profile: each property
## runs a fifth of its examples (`make test` runs the full counts)
test-unit: install-dev
	$(BIN)/python -m pytest -n $(UNIT_WORKERS) --dist loadgroup -m "not slow" --hypothesis-profile=fast

# System tools some tests drive (nginx for the gateway routing tests, Chromium for the console)
# and wrk, which `make bench` drives.
test-tools:
	@bash deploy/ci/ensure-test-tools.sh

lint: install-dev
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: install
	$(BIN)/python -m app.cli migrate

## bench: every hot path beside a baseline measured in the same run (figures in extra_info)
bench: install-dev test-tools
	@mkdir -p .benchmarks
	$(BIN)/python -m pytest bench -p no:xdist --benchmark-only -s \
		--benchmark-columns=min,median,mean,ops,rounds --benchmark-json=.benchmarks/bench.json

clean:
	rm -rf $(VENV) .data .test-artifacts .benchmarks .mypy_cache .ruff_cache *.egg-info
