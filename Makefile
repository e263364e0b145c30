# LedgerLens: `make run` starts the workbench, `make test` runs every test.
# Both install what they need first (a virtualenv in ./.venv; Debian's chromium
# and poppler-utils for the browser and PDF tests).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.install-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install system-deps run test lint lint-imports bench demo clean

install: $(STAMP)

# torch first, from its CPU wheel: any other resolution pulls gigabytes of CUDA.
$(STAMP): requirements.txt constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $(STAMP)

system-deps:
	@command -v chromium >/dev/null && command -v pdftotext >/dev/null || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium poppler-utils )
	@command -v java >/dev/null || \
	  ( $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq openjdk-17-jre-headless )  # PySpark's JVM

run: install
	$(PY) -m engine demo --if-empty
	$(PY) -m streamlit run app.py --server.headless true --browser.gatherUsageStats false

test: install system-deps
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .

# The layer contracts in pyproject.toml (README "Layers"); `make test` runs them first.
lint-imports: install
	$(VENV)/bin/lint-imports

bench: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
