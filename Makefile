# Two commands first: `make demo` (lobes of the sample CT) and `make test` (the test suite).
# Both create or update the environment in .venv/ (Python 3.11) on first use.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
SAMPLE := samples/ct/sample-healthy.mha

.PHONY: setup demo test test-all test-slow clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

demo: setup
	$(PY) -m algorithm predict $(SAMPLE) -o demo-output

test: setup
	$(PY) -m pytest -m "not slow" -q

test-all: setup
	$(PY) -m pytest -q

clean:
	rm -rf demo-output .pytest_cache
