# The two commands: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install system-deps demo viewer test soak bench bench-imbalance lint format clean bundled-model phantoms medmnist-benchmark medmnist-benchmark-64

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
	# The OHIF viewer at /viewer when Node.js and npm are here; the node runs without it.
	if command -v npm >/dev/null; then $(BIN)/radassist viewer install || true; fi
	$(BIN)/radassist demo

# OHIF (pinned @ohif/app from the npm registry) into the data folder, served at /viewer.
viewer: install
	$(BIN)/radassist viewer install

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long reliability run: 8 senders x 300 instances with three SIGKILLs, and 1,000
# fuzz cases of each kind (the CI version runs 240 instances, one kill, 300 cases).
soak: install system-deps
	SOAK=1 $(BIN)/python -m pytest tests/reliability -s

bench: install system-deps
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/phantoms.py
	$(BIN)/python bench/end_to_end.py
	$(BIN)/python bench/anatomy.py

# AdrenalMNIST3D with train's defaults, 3 seeds, beside the published table and a
# shape-measure baseline (about 8 minutes a seed on 2 CPU cores; 22 at 64³).
medmnist-benchmark: install
	$(BIN)/python bench/medmnist.py

medmnist-benchmark-64: install
	$(BIN)/python bench/medmnist.py --data ../shared/data/medmnist/adrenalmnist3d_64.npz

# Class imbalance: none vs class weights vs ACGAN feature synthesis, 3 seeds, on
# AdrenalMNIST3D and a 5 %-positive synthetic set (about 2 hours on 2 CPU cores).
bench-imbalance: install
	$(BIN)/python bench/imbalance.py

# The demo model shipped in the package, trained by our own code on synthetic phantoms
# (about 20 minutes on 2 CPU cores); its card records this command.
bundled-model: install
	rm -rf assistant/analysis/model/bundled
	$(BIN)/radassist train --dataset synthetic:300,lesions=10-40,size=128,mask=intracranial \
		--out assistant/analysis/model/bundled --seed 0
	rm -rf assistant/analysis/model/bundled/training

# A montage of synthetic cases: what the bundled model learns from.
phantoms: install
	$(BIN)/python -m assistant.training.montage docs/phantoms.png

# ruff over everything; mypy (settings in pyproject.toml) over the installed packages.
lint: install
	$(BIN)/ruff check assistant dicom_node migrations tests bench research web
	$(BIN)/ruff format --check assistant dicom_node migrations tests bench research web
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix assistant dicom_node migrations tests bench research web
	$(BIN)/ruff format assistant dicom_node migrations tests bench research web

clean:
	rm -rf $(VENV) var .pytest_cache test-artifacts
