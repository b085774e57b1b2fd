# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# A stamp per install flavour, redone when pyproject.toml changes. --no-compile: Python
# compiles a module when it is first imported, so the hundreds the tests never import (of
# matplotlib, scikit-learn, dask) cost nothing: the test install took 18 s, not 52 s
# (one fresh venv each, once, on a 2-core AMD EPYC VM).
$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PY) -m pip install -q --no-compile -e '.[examples]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q --no-compile -e '.[test,examples,mpi,dask]'
	touch $@

demo: $(VENV)/.stamp-demo
	$(PY) examples/disk.py

test: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict funcdl tests/typing_user_code.py
	$(PY) tests/run_shards.py

bench: $(VENV)/.stamp-test
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
