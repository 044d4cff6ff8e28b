"""Vectorised negative sampling that never returns an item the user interacted with."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from data_modules.known_pairs import KnownPairs


class DrawsNegatives(Protocol):
    """Anything a training set can draw its negatives from (a curriculum swaps in its own)."""

    num_items: int

    def sample(self, users: np.ndarray, num: int, rng: np.random.Generator) -> np.ndarray:
        """``[len(users), num]`` items that are not known pairs of their users."""


class NegativeSampler:
    """Draws items per user from ``probs`` (uniform when None), rejecting known items.

    Membership of a whole batch in the known pairs is one vectorised lookup
    (:class:`~data_modules.known_pairs.KnownPairs`).
    """

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int, probs: np.ndarray | None = None) -> None:
        self.num_items = num_items
        self.known = KnownPairs(users, items, num_items)
        self.set_probs(probs)
        counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
        if len(counts) and counts.max() >= num_items:
            raise ValueError(
                f"a user has interacted with all {num_items} items, so no negative exists for them; "
                "remove such users (e.g. a max_user_interactions filter) before training"
            )

    def set_probs(self, probs: np.ndarray | None) -> None:
        """Change the proposal distribution (a curriculum mixes in popularity this way)."""
        if probs is not None:
            probs = np.asarray(probs, dtype=np.float64)
            if probs.shape != (self.num_items,) or (probs < 0).any() or probs.sum() <= 0:
                raise ValueError(f"negative sampling probabilities must be {self.num_items} non-negative weights")
            probs = probs / probs.sum()
            self._cdf = np.cumsum(probs)
        else:
            self._cdf = None
        self.probs = probs

    def _draw(self, size: int, rng: np.random.Generator) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(0, self.num_items, size=size)
        return np.minimum(np.searchsorted(self._cdf, rng.random(size), side="right"), self.num_items - 1)

    def is_known(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.known.contains(users, items)

    def sample(self, users: np.ndarray, num: int, rng: np.random.Generator, max_rounds: int = 100) -> np.ndarray:
        """[len(users), num] negatives; resamples only the rejected entries."""
        rows = np.repeat(np.asarray(users, dtype=np.int64), num)
        out = self._draw(len(rows), rng)
        bad = np.flatnonzero(self.is_known(rows, out))
        for _ in range(max_rounds):
            if len(bad) == 0:
                return out.reshape(len(users), num)
            out[bad] = self._draw(len(bad), rng)
            bad = bad[self.is_known(rows[bad], out[bad])]
        raise RuntimeError(
            f"could not draw negatives for {len(bad)} entries after {max_rounds} rounds: the sampling "
            "distribution puts almost all its mass on items these users already know"
        )
