# Set-up is automatic: each target creates .venv with Python 3.12 when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs clean

demo: $(STAMP)
	$(VENV)/bin/bayesmix demo --out demo-report

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(PY) -m ruff check bayesmix tests benchmarks

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

$(PY):
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), f"bayesmix needs Python >= 3.12, found {sys.version.split()[0]}: install 3.12 or run make PYTHON=python3.12"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
