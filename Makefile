# The two commands: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install system-deps demo test bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the CPU build (an unpinned torch pulls gigabytes of CUDA wheels)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

# Debian's DICOM and database tools for the integration tests (needs root when missing).
system-deps:
	scripts/install-system-deps.sh

demo: install
	$(BIN)/radassist demo

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/inference.py

lint: install
	$(BIN)/ruff check assistant dicom_node migrations tests bench
	$(BIN)/ruff format --check assistant dicom_node migrations tests bench

format: install
	$(BIN)/ruff check --fix assistant dicom_node migrations tests bench
	$(BIN)/ruff format assistant dicom_node migrations tests bench

clean:
	rm -rf $(VENV) var .pytest_cache test-artifacts
