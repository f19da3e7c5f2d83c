# Two entry points: `make demo` runs the whole pipeline on the embedded data set, `make test` runs the checks.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-fast bench ablate gpu-check

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.10
	$(BIN)/uv pip install -q --python $(BIN)/python -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The clock starts before the install, so the time printed at the end is what a newcomer waits.
demo:
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory install && \
	dvc repro evaluate@synthetic && \
	python -m stages report --summary artifacts/synthetic/evaluate/summary.json && \
	echo "make demo: $$(( $$(date +%s) - start )) s in all, install included"

# Every variant of ablation.yaml over its seeds, on the embedded data set and its harder setting (dvc experiments;
# commit first: an experiment runs the committed code plus tracked changes).
ablate: $(STAMP)
	python -m stages ablate

# Two pytest-xdist workers, each handed whole modules (their module-scoped DVC projects are built once), the modules
# with slow tests first (tests/conftest.py): nearly every test runs on one core (one torch thread, one stage at a time).
# First, alone on an idle machine, the tests that kill a dvc and time how soon its stage ends: beside a busy worker,
# and right after the parallel part, they missed their deadlines (4 of 4, twice); run first they pass.
test: $(STAMP)
	ruff check .
	python -m pytest -q -m alone
	python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not alone"

# The quick loop while editing: every test but the slow ones (end-to-end DVC runs, whole stage chains, torchrun).
test-fast: $(STAMP)
	ruff check .
	python -m pytest -q -m "not slow"

bench: $(STAMP)
	for b in tests/benchmarks/bench_*.py; do python $$b || exit 1; done

# One GPU: every stage's CUDA path, the DGCN step against a plain step, kNN on the GPU == CPU (tools/gpu_check.py).
gpu-check: $(STAMP)
	python -m tools.gpu_check
