# Two entry points: `make train` and `make test`. Both create/update .venv first.

# Interpreter for .venv: the first of these that runs and is Python >= 3.11 (a name on
# PATH can be a shim that fails to run, so each candidate is executed, not just found).
# Override with `make PYTHON=/path/to/python3.x`.
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3
PYTHON_OK = $(1) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1
FIRST_PYTHON = $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell $(call PYTHON_OK,$(p)) && echo $(p))))
# Searched once, and only when a recipe needs it (creating .venv).
PYTHON ?= $(eval PYTHON := $(FIRST_PYTHON))$(PYTHON)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

# PyTorch. Plain PyPI torch for Linux is a CUDA build (several GB), so CPU machines pin
# the tested CPU build (constraints-cpu.txt) and take it from the PyTorch CPU index; GPU
# machines (nvidia-smi present) take a CUDA build from the CUDA index. The index goes in
# as --extra-index-url: its "2.13.0+cpu" (or "+cu128") outranks PyPI's "2.13.0" for the
# same pin, and the other dependencies still come from PyPI.
# The index is probed first (5 s timeout) and left out when unreachable: pip would
# otherwise retry an unreachable index five times (about 8 s, with warnings) before
# going on. Without it, pip finds torch in its configured sources; on machines whose pip
# config lists a local wheel folder (find-links, e.g. /opt/wheels holding
# torch-2.13.0+cpu), `pip install torch==2.13.0` takes that file within a second, its
# "+cpu" label again outranking PyPI's CUDA "2.13.0". Set TORCH_INDEX= (empty) to skip
# the index altogether.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH_INDEX ?= https://download.pytorch.org/whl/cu128
TORCH_SPEC := torch>=2.13,<3
CONSTRAINTS :=
else
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SPEC := torch==2.13.0
CONSTRAINTS := -c constraints-cpu.txt
endif
INDEX_REACHABLE = $(PY) -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/torch/", timeout=5)' "$(TORCH_INDEX)" >/dev/null 2>&1
# Our packages build with the venv's setuptools; DeepSpeed (a source package) builds
# against the venv's torch instead of downloading a second torch into an isolated build
# environment, without compiling its optional C++/CUDA ops (DS_BUILD_OPS=0).
INSTALL := DS_BUILD_OPS=0 $(PIP) install --no-build-isolation $(CONSTRAINTS)

.PHONY: install install-dev train test clean

$(VENV)/bin/activate:
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: no Python >= 3.11 found (tried $(PYTHON_CANDIDATES)); install one or run make PYTHON=/path/to/python3.x" >&2; \
		exit 1; \
	fi
	@$(call PYTHON_OK,$(PYTHON)) || { echo "error: PYTHON=$(PYTHON) is not a working Python >= 3.11" >&2; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON) ($$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])'))"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=84.2.1,<85" "wheel>=0.48,<1"

$(VENV)/.torch: $(VENV)/bin/activate constraints-cpu.txt
	@if [ -n "$(TORCH_INDEX)" ] && $(INDEX_REACHABLE); then \
		echo "torch: $(TORCH_SPEC) from $(TORCH_INDEX)"; \
		$(PIP) install --extra-index-url "$(TORCH_INDEX)" $(CONSTRAINTS) "$(TORCH_SPEC)"; \
	else \
		echo "torch: $(TORCH_SPEC) from pip's configured sources ($(or $(TORCH_INDEX),TORCH_INDEX) not used: unreachable or empty)"; \
		$(PIP) install $(CONSTRAINTS) "$(TORCH_SPEC)"; \
	fi
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml setup.py
	$(INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(INSTALL) -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Trains the default model (NeuMF) on the built-in synthetic data, then the
# most-popular baseline on the same data, and prints both results tables.
train: install
	$(VENV)/bin/recflow-train $(ARGS)
	$(VENV)/bin/recflow-train model=pop $(ARGS)

# Tests run in parallel worker processes (pytest-xdist), one per core, at most 4.
test: install-dev
	$(PY) -m pytest -q -n auto --maxprocesses=4

clean:
	rm -rf $(VENV)
