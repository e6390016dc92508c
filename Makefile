# Two entry points (see README): `make demo` and `make test`. Both build the virtual
# environment from pyproject.toml first, with the versions locked in requirements/dev.txt,
# so a fresh clone needs nothing but python3 (and the package index).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint imports typecheck unit lock clean

# The stamp is rebuilt whenever pyproject.toml or the lock changes, so new dependencies
# install themselves. `.[dev]` includes the development kit (`.[devkit]`).
$(VENV)/.installed: pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/dev.txt -e '.[dev]'
	touch $@

# Re-resolve the lock files after editing pyproject.toml (LOCK_ARGS=--upgrade to move every
# pin to the newest release). The daemon's lock is constrained by the dev lock, so the
# daemon runs in production on exactly the versions the suite tested.
LOCK := $(BIN)/uv pip compile pyproject.toml --python-version 3.11 --annotation-style line \
	--custom-compile-command 'make lock  (LOCK_ARGS=--upgrade for newer releases)' $(LOCK_ARGS)
lock: $(BIN)/uv
	$(LOCK) --all-extras -o requirements/dev.txt
	$(LOCK) -c requirements/dev.txt -o requirements/daemon.txt
	sed -i '1i # All extras (dev + devkit), Linux/CPython 3.11: `make test` installs with these as\
	# constraints. Refresh after editing pyproject.toml: `make lock`, which runs\
	# uv pip compile pyproject.toml --all-extras --python-version 3.11 -o requirements/dev.txt' \
		requirements/dev.txt
	sed -i '1i # The daemon alone (no extras), Linux/CPython 3.11, the same versions as dev.txt:\
	# pip install -r requirements/daemon.txt . Refresh after editing pyproject.toml: `make lock`,\
	# which runs uv pip compile pyproject.toml -c requirements/dev.txt --python-version 3.11\
	# -o requirements/daemon.txt' requirements/daemon.txt

# Only uv, not the locked environment: a pyproject.toml edit may conflict with the old lock.
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv

demo: $(VENV)/.installed
	$(BIN)/novavoice demo

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layering contracts ([tool.importlinter] in pyproject.toml).
imports: $(VENV)/.installed
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed
	$(BIN)/mypy

# Two test processes (pytest-xdist): most of the suite's time is real calls waiting on the
# clock, so two processes on two cores take ~7 min where one took ~10.5. --dist loadfile
# keeps a file's tests (and its module fixtures) in one process. PYTEST_WORKERS=0 runs
# everything in this process (for a debugger, or -k on one test).
PYTEST_WORKERS ?= 2
unit: $(VENV)/.installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test: lint imports typecheck unit

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
