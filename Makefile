# Two commands matter: `make run` (execute every notebook, write them and their HTML to
# build/notebooks/) and `make test` (lint, unit tests, strict nbval on the committed notebooks).
# Both create .venv from the pinned requirements first when it is missing or out of date.
#
#   make run NB=01 PARAMS='-p height 40 -p device auto'   one notebook, other parameter values
#   make notebooks [NB=02]                           re-execute committed notebooks in place
#   make help                                        every target

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.NOTPARALLEL:

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
LOCK := requirements.lock
STAMP := $(VENV)/.installed
BUILD := build/notebooks
SANITIZE := notebooks/nbval_sanitize.cfg
WORKFLOW := $(wildcard .github/workflows/*.yml)

# Notebook selection: every notebooks/*.ipynb, or those whose name starts with $(NB).
NB :=
PARAMS :=
BENCH_ARGS :=
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
SELECTED := $(if $(NB),$(sort $(wildcard notebooks/$(notdir $(basename $(NB)))*.ipynb)),$(NOTEBOOKS))

# A fixed thread count: float32 sums depend on it, and committed outputs are made with it.
THREADS := 2
export OMP_NUM_THREADS := $(THREADS)
export MKL_NUM_THREADS := $(THREADS)
export OPENBLAS_NUM_THREADS := $(THREADS)
export NUMEXPR_NUM_THREADS := $(THREADS)
export VECLIB_MAXIMUM_THREADS := $(THREADS)
# Waiting OpenMP threads sleep instead of spinning: on a busy machine a spinning thread takes
# the core its partner needs. Results do not depend on it, only the time.
export OMP_WAIT_POLICY := PASSIVE
export PYTHONHASHSEED := 0
# Quiet, path-free start-up messages of Jupyter and of the debugger bundled with ipykernel.
export JUPYTER_PLATFORM_DIRS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
export PATH := $(BIN):$(PATH)

.PHONY: help setup lock run test lint unit nbval notebooks lab bench clean distclean check-selection \
	book book-test

help:
	@echo "make run        set up, execute notebooks/*.ipynb with papermill into $(BUILD)/ (+ HTML)"
	@echo "                  NB=01 selects notebooks by prefix; PARAMS='-p height 40 -p device auto'"
	@echo "make test       set up, then ruff, actionlint, pytest (tests/) and strict nbval"
	@echo "make notebooks  re-execute the committed notebooks in place (NB=02 for one)"
	@echo "make lab        JupyterLab on the project"
	@echo "make bench      python benchmarks/run.py (BENCH_ARGS=--quick for a short run)"
	@echo "make setup      only create/update $(VENV) from $(LOCK)"
	@echo "make lock       regenerate $(LOCK) (pip-compile) and environment.yml from pyproject.toml"
	@echo "make book       the collection as a static site (Jupyter Book) in build/book/_build/html/"
	@echo "make book-test  build the book, then check it (and make run's HTML) in headless Chromium"
	@echo "make clean      remove build outputs and caches (distclean: also $(VENV))"

# ---------------------------------------------------------------- environment
$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "python3.11 not found; run make PYTHON=/path/to/python3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "$(PYTHON) is Python %d.%d; the pins in $(LOCK) are for 3.11 (make PYTHON=/path/to/python3.11)" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# Build matplotlib's font cache now: on first use it says so on stderr, in a notebook cell.
	$(BIN)/python -c "import matplotlib.pyplot"
	@touch $@

setup: $(STAMP)

# Regenerate the lock from pyproject.toml's dependencies with pip-tools, then environment.yml
# from the lock. torch's "+cpu" label is dropped: the pin must match the CPU and CUDA builds.
EXTRAS := notebooks dev book
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$$(grep -m1 '^pip-tools==' $(LOCK) || echo pip-tools)"
	$(BIN)/pip-compile --quiet --no-emit-index-url --no-emit-find-links --strip-extras \
	  --newline LF $(addprefix --extra ,$(EXTRAS)) --output-file $(LOCK) pyproject.toml
	sed -i 's/^torch==\(.*\)+cpu$$/torch==\1/' $(LOCK)
	$(BIN)/python tools/environment_from_lock.py $(LOCK) environment.yml

check-selection:
	@test -n "$(SELECTED)" || { echo "no notebook matches NB=$(NB) in notebooks/" >&2; exit 1; }

# ---------------------------------------------------------------- notebooks
run: setup check-selection
	@mkdir -p $(BUILD)
	@failed=""; \
	for nb in $(SELECTED); do \
	  out="$(BUILD)/$$(basename $$nb)"; \
	  echo "==> papermill $$nb -> $$out $(PARAMS)"; \
	  if $(BIN)/papermill "$$nb" "$$out" --cwd notebooks $(PARAMS) \
	     && $(BIN)/python book/nbhtml.py "$$out"; then \
	    echo "    wrote $$out and $${out%.ipynb}.html"; \
	  else \
	    failed="$$failed $$nb"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed" >&2; exit 1; fi

# Execute top to bottom (execution counts 1..n), keep only the final state of each stream
# (what a progress bar shows last, as nbval compares it), drop timing and papermill metadata.
notebooks: setup check-selection
	@for nb in $(SELECTED); do \
	  echo "==> executing $$nb in place"; \
	  $(BIN)/jupyter nbconvert --log-level WARN --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=1800 --NotebookClient.record_timing=False "$$nb"; \
	  $(BIN)/jupyter nbconvert --log-level WARN --to notebook --inplace --coalesce-streams "$$nb"; \
	  $(BIN)/nbstripout --keep-output --keep-count \
	    --extra-keys "metadata.papermill cell.metadata.papermill cell.metadata.execution" "$$nb"; \
	done

lab: setup
	$(BIN)/jupyter lab

bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# ---------------------------------------------------------------- tests
test: lint unit nbval book-test
	@echo "make test: all checks passed"

lint: setup
	@start=$$SECONDS; \
	echo "==> ruff check"; $(BIN)/ruff check .; \
	echo "==> ruff format --check"; $(BIN)/ruff format --check .; \
	echo "==> actionlint $(WORKFLOW)"; $(BIN)/actionlint $(WORKFLOW); \
	echo "    lint took $$((SECONDS - start)) s"

unit: setup
	@start=$$SECONDS; \
	echo "==> pytest (unit tests)"; $(BIN)/pytest -p no:cacheprovider tests --ignore=tests/test_book.py; \
	echo "    unit tests took $$((SECONDS - start)) s"

nbval: setup
	@if [ -n "$(NB)" ] && [ -z "$(SELECTED)" ]; then echo "no notebook matches NB=$(NB)" >&2; exit 1; fi; \
	if [ -z "$(SELECTED)" ]; then echo "==> nbval: no notebook to check"; exit 0; fi; \
	start=$$SECONDS; \
	echo "==> nbval (strict) on:"; for nb in $(SELECTED); do echo "      $$nb"; done; \
	$(BIN)/pytest -p no:cacheprovider --nbval --nbval-current-env \
	  --nbval-sanitize-with $(SANITIZE) $(SELECTED); \
	echo "    nbval took $$((SECONDS - start)) s"

# ---------------------------------------------------------------- the book
# The committed notebooks as a static site, built with Jupyter Book without executing them
# (nbval checks their outputs); see book/build.py. Nothing is fetched at build or read time.
book: setup
	@start=$$SECONDS; \
	echo "==> book: notebooks/*.ipynb -> build/book/_build/html/ (warnings are errors)"; \
	$(BIN)/python book/build.py --quiet; \
	echo "    book took $$((SECONDS - start)) s"

# Every page of the book, and make run's HTML, in headless Chromium (tests/test_book.py);
# screenshots in build/book/screenshots*/. Fails in CI (CI set) when no browser is found.
book-test: book
	@start=$$SECONDS; \
	echo "==> pytest tests/test_book.py (the book in a browser)"; \
	BOOK_PREBUILT=1 $(BIN)/pytest -p no:cacheprovider tests/test_book.py; \
	echo "    book test took $$((SECONDS - start)) s"

# ---------------------------------------------------------------- cleaning
clean:
	rm -rf build .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
