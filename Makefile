# Two entry points: `make train` and `make test`. Both create/update .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# CPU machines pin the local CPU torch build; GPU machines (nvidia-smi present) take
# torch from TORCH_INDEX (a CUDA wheel index) unless TORCH_INDEX is set to empty.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 1)
TORCH_INDEX ?= https://download.pytorch.org/whl/cu128
ifeq ($(HAS_GPU),1)
TORCH_SPEC := torch>=2.4
TORCH_ARGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
CONSTRAINTS :=
else
TORCH_SPEC := torch==2.13.0
TORCH_ARGS :=
CONSTRAINTS := -c constraints-cpu.txt
endif

.PHONY: install install-dev train test clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml constraints-cpu.txt
	$(PIP) install $(TORCH_ARGS) "$(TORCH_SPEC)"
	# deepspeed builds against the torch already installed (no isolated build env,
	# so no second torch download).
	DS_BUILD_OPS=0 $(PIP) install --no-build-isolation $(CONSTRAINTS) "deepspeed>=0.15"
	$(PIP) install $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install $(CONSTRAINTS) -e ".[dev]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Trains the default model (NeuMF) on the built-in synthetic data, then the
# most-popular baseline on the same data, and prints both results tables.
train: install
	$(PY) -m train $(ARGS)
	$(PY) -m train model=pop $(ARGS)

test: install-dev
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV)
