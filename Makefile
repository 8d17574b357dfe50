# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv and install.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-system test-all bench clean

$(BIN)/normlab: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# Take a CPU torch first so the open range in pyproject never pulls a CUDA build;
	# a venv that already has torch (e.g. a CUDA build the user installed) keeps it.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,hf]"
	touch $(BIN)/normlab

install: $(BIN)/normlab

# The test suite also checks what the optional extras write (TensorBoard / trackio / W&B files), so it
# installs them; `make demo` and a user's install do not need them.
$(VENV)/.test-extras: $(BIN)/normlab
	$(BIN)/pip install -q -e ".[dev,hf,trackers]"
	touch $(VENV)/.test-extras

demo: install
	$(BIN)/normlab run prepost
	@echo "next: source $(VENV)/bin/activate   (puts normlab on this shell's PATH; or call $(BIN)/normlab)"

# One pytest worker per core (pytest-xdist); an idle worker steals tests from a busy one.
test: install $(VENV)/.test-extras
	$(BIN)/python -m pytest -q -n auto --dist worksteal

# tests/system: the process-boundary tests (kill -9 and resume, a sweep's signals and pipes, Chromium, benchmark
# scripts); .ci/run runs them after `make test`.
test-system: install $(VENV)/.test-extras
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m "system and not slow and not gpu and not distributed and not ray" tests/system

test-all: install $(VENV)/.test-extras
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m ""

bench: install
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
