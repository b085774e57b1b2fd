# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip

# A stamp per install flavour, redone when pyproject.toml changes. -qq: pip still prints
# errors, but not the build backend's notes on editable installs.
$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PY) -m pip install -qq -e '.[examples]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PY) -m pip install -qq -e '.[test,examples,mpi,dask]'
	touch $@

demo: $(VENV)/.stamp-demo
	$(PY) examples/disk.py

# compileall: bytecode for funcdl and the tests (up-to-date files are skipped). Where
# PYTHONDONTWRITEBYTECODE is set, every process the tests start (MPI ranks, pool workers,
# examples) would otherwise compile funcdl from source again.
test: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict funcdl tests/typing_user_code.py
	$(PY) -m compileall -q funcdl tests examples benchmarks > /dev/null
	$(PY) tests/run_shards.py

bench: $(VENV)/.stamp-test
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
