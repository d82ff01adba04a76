# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv
# (Python 3.11) if it is missing and installs the package into it.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNS ?= runs/demo
OBJECTIVES ?= baseline,ngebm

.PHONY: demo test docs clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

# Trains the baseline and NG-EBM on the embedded data (same model, steps and seed), evaluates
# them and writes $(RUNS)/report/report.md with its plots. OBJECTIVES=baseline,ngebm,sgld adds JEM.
demo: $(STAMP)
	$(PY) -m experiments.demo --output=$(RUNS) --objectives=$(OBJECTIVES)

# The API reference is built with warnings as errors: a broken docstring fails the tests.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15 tests
	$(MAKE) docs

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html

clean:
	rm -rf $(VENV) runs docs/_build
