# Two commands do all the set-up on a fresh machine (Python 3.11+ with pip):
#   make run    the main job
#   make test   the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/poolbench run --quick

bench: $(STAMP)
	mkdir -p results
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-json results/benchmarks.json

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
