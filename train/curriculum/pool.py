"""The sampler view: which training examples an epoch may draw at competence ``c``.

The pool is the easiest ``ceil(c * N)`` examples (ties broken by index, so the choice is
deterministic), returned sorted so that at ``c = 1`` it is exactly ``range(N)`` and the
sampler then yields the very batches it yields without a curriculum. The
:class:`~data_modules.batching.EpochBatchSampler` shuffles the pool with the epoch's
seed and gives every rank a disjoint, equally long shard of it.
"""
from __future__ import annotations

import math

import numpy as np

_EPS = 1e-9  # c * N computed in floating point: 0.3 * 10 must give 3, not 4


def pool_size(competence: float, num_examples: int, minimum: int = 1) -> int:
    """``ceil(c * N)``, at least ``minimum`` (e.g. one example per rank), at most ``N``."""
    if not 0.0 < competence <= 1.0:
        raise ValueError(f"competence must lie in (0, 1], got {competence}")
    size = math.ceil(competence * num_examples - _EPS)
    return int(min(num_examples, max(size, minimum)))


def easiest_order(difficulty: np.ndarray) -> np.ndarray:
    """Example indices from easiest to hardest; equal difficulties keep index order."""
    difficulty = np.asarray(difficulty, dtype=np.float64)
    if difficulty.ndim != 1:
        raise ValueError(f"difficulty must be one score per example, got shape {difficulty.shape}")
    if np.isnan(difficulty).any():
        raise ValueError(f"{int(np.isnan(difficulty).sum())} difficulty scores are NaN; the scorer is broken")
    return np.argsort(difficulty, kind="stable")


def allowed_pool(order: np.ndarray, competence: float, minimum: int = 1) -> np.ndarray:
    """Sorted indices of the easiest ``ceil(c * N)`` examples under ``order``."""
    return np.sort(order[: pool_size(competence, len(order), minimum)])
