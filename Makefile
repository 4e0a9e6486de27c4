# Two commands do all the set-up on a fresh machine (Python 3.11+ with pip):
#   make run    the main job
#   make test   the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# The compiled hot path is built by the install (setup.py): a change to its sources
# rebuilds it, else the stale modules are skipped for the pure ones (pools/_compiled.py).
HOT    := $(wildcard pools/*.py)

.PHONY: run test lint typecheck bench report chromium cpython-tests clean

$(STAMP): pyproject.toml setup.py $(HOT)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/poolbench run --quick

bench: $(STAMP)
	mkdir -p results
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-json results/benchmarks.json

# Coverage (line and branch, worker processes and servers included; configured in
# pyproject.toml) is printed at the end, fails the run under its floor (fail_under),
# and is written as HTML to results/coverage/index.html. It is measured on the pure
# modules (compiled code reports no lines); then the conformance suite, the property
# tests and the backends' own tests run again on the compiled ones.
COMPILED_TESTS := tests/test_compiled.py tests/test_conformance.py tests/test_properties.py \
	tests/test_thread_backend.py tests/test_asyncio_backend.py tests/test_process_backend.py \
	tests/test_job_future.py tests/test_callbacks.py tests/test_exit.py tests/test_testing_kit.py \
	tests/test_gil_handoff.py
#
# Both runs spread the tests over two processes (pytest-xdist; none on a one-core
# machine): the tests start real processes, servers and clusters and bound their waits
# by deadlines sized for a loaded 2-core machine, so more would only crowd it.
CORES  := $(shell $(PYTHON) -c 'import os; print(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)')
XDIST  := $(shell [ $(CORES) -lt 2 ] || echo "-n 2 --dist worksteal")
test: $(STAMP) chromium cpython-tests lint typecheck
	POOLBENCH_PURE_PYTHON=1 $(PY) -m pytest $(XDIST) --cov --cov-report=term --cov-report=html:results/coverage
	POOLBENCH_EXPECT_COMPILED=1 $(PY) -m pytest $(XDIST) -p no:cov -q $(COMPILED_TESTS)

# The formatter and the linter (configured in pyproject.toml); `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# mypy: strict on the library (pools/), checked on the harness ([tool.mypy] in
# pyproject.toml says which files); `make test` runs it after lint.
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Headless Chromium for the report's browser test, from Debian's packages when we
# can install them (root with apt-get); without it that one test skips with the reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: could not install Chromium; the report's browser test will skip"; \
	else echo "note: no Chromium; the report's browser test will skip (Debian: apt-get install -y chromium)"; fi

# CPython's executor test suite (Lib/test/test_concurrent_futures.py), which the tests run
# against pools.Executor: Debian ships it apart from Python (libpythonX.Y-testsuite); without
# it that one test skips with the reason.
PYVER = $(shell $(PYTHON) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cpython-tests:
	@test -f /usr/lib/python$(PYVER)/test/test_concurrent_futures.py || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpython$(PYVER)-testsuite >/dev/null; } || \
		echo "note: could not install libpython$(PYVER)-testsuite; the CPython executor suite will skip"; \
	else echo "note: no CPython test suite; its test will skip (Debian: apt-get install -y libpython$(PYVER)-testsuite)"; fi

report: $(STAMP)
	$(VENV)/bin/poolbench report --last

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache .coverage .coverage.*
