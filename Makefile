# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

# The venv gets the newest pip from the system's pip (`--python`, pip >= 22.3) in 3 s, where
# venv's own ensurepip takes 8 s to install the bundled pip that would then be upgraded; a
# Python without a usable pip takes that way. A venv left without pip is removed, so the next
# make starts again.
$(PY):
	$(PYTHON) -m venv --without-pip $(VENV)
	$(PYTHON) -m pip --python $(PY) install -qq --upgrade pip 2>/dev/null \
		|| { $(PY) -m ensurepip > /dev/null && $(PY) -m pip install -qq --upgrade pip; } \
		|| { rm -rf $(VENV); exit 1; }

# A stamp per install flavour, redone when pyproject.toml changes. -qq: pip still prints
# errors, but not the build backend's notes on editable installs. pip compiles what it
# installs one file at a time (28 of the test install's 47 s here); compileall -j 0 does it
# on every core, but for the packages' own test suites and pip, which nothing here imports
# after the install (1,710 of 5,458 files: 15 s instead of 20; the pattern reads below
# site-packages only, so a checkout under a folder named tests or pip compiles all). Like
# pip, it goes on past a file that does not compile, and says so.
COMPILE_SITE = $(PY) -m compileall -q -j 0 -x 'site-packages/(pip/|(.*/)?tests/)' "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
	|| echo "compileall: some installed files did not compile (pip would skip them too)"

$(VENV)/.stamp-demo: pyproject.toml | $(PY)
	$(PY) -m pip install -qq --no-compile -e '.[examples]'
	$(COMPILE_SITE)
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(PY)
	$(PY) -m pip install -qq --no-compile -e '.[test,examples,mpi,dask]'
	$(COMPILE_SITE)
	touch $@

demo: $(VENV)/.stamp-demo
	$(PY) examples/disk.py

# compileall: bytecode for funcdl and the tests (up-to-date files are skipped). Where
# PYTHONDONTWRITEBYTECODE is set, every process the tests start (MPI ranks, pool workers,
# examples) would otherwise compile funcdl from source again. mypy (22 s of one core from a
# fresh clone, the other idle) runs beside the test shards rather than before them; its
# report follows the tests', and either one failing fails make test. (Back to back on fresh
# clones: 281.6 s against 284.9 s, the shards slowed by what mypy no longer adds alone.)
MYPY = $(VENV)/bin/mypy --strict funcdl tests/typing_user_code.py

test: $(VENV)/.stamp-test
	$(VENV)/bin/ruff check .
	$(PY) -m compileall -q funcdl tests examples benchmarks > /dev/null
	@echo "$(MYPY) (beside the tests; its report follows theirs)"
	@$(MYPY) > $(VENV)/mypy.log 2>&1 & typing=$$!; \
	echo "$(PY) tests/run_shards.py"; $(PY) tests/run_shards.py; tests=$$?; \
	wait $$typing; typed=$$?; echo "---- $(MYPY)"; cat $(VENV)/mypy.log; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

bench: $(VENV)/.stamp-test
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
