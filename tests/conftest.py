"""Shared fixtures: small data made by the tests themselves (never MovieLens files)."""
from __future__ import annotations

import os

# Tiny test tensors run fastest single-threaded (threads only wait on each other). Set
# before torch loads OpenMP; `num_threads: auto` keeps an exported OMP_NUM_THREADS, and
# subprocesses (torchrun, CLI tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_environment():
    """Undo environment changes a test makes (an in-process DDP run leaves LOCAL_RANK,
    WORLD_SIZE and MASTER_PORT behind, and a later Lightning launch would then take its
    processes for externally started ones and wait for ranks that never come)."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
