# Set-up is automatic: each target creates .venv with Python 3.12 when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# exact versions the suite last passed with; pyproject.toml keeps the ranges for library users
LOCK := constraints.txt
LATEST := .venv-latest
CHECK_PYTHON := $(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), f"bayesmix needs Python >= 3.12, found {sys.version.split()[0]}: install 3.12 or run make PYTHON=python3.12"'

.PHONY: demo test test-latest lock lint docs clean

demo: $(STAMP)
	$(VENV)/bin/bayesmix demo --out demo-report

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --durations=30

lint: $(STAMP)
	$(PY) -m ruff check bayesmix tests benchmarks

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

$(PY):
	@$(CHECK_PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml $(LOCK)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[test]"
	touch $(STAMP)

# the suite against the newest releases pyproject.toml allows, in its own venv, ignoring $(LOCK)
test-latest:
	@$(CHECK_PYTHON)
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test]"
	$(LATEST)/bin/python -m pytest -n 2 --dist loadfile

# refresh $(LOCK) from the newest releases, only if the suite passes with them
lock: test-latest
	{ grep '^#' $(LOCK); $(LATEST)/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) $(LATEST) build *.egg-info
