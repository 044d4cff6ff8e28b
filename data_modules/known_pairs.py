"""Known (user, item) pairs: what a negative sampler must never return.

A pair is kept as the int64 key ``user * num_items + item``; sorted unique keys make
membership of a whole batch one ``searchsorted``, with no per-pair Python work. Training
negatives use the training pairs; sampled evaluation candidates use every split's.
"""
from __future__ import annotations

import numpy as np


def pair_keys(users: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    """``user * num_items + item`` as int64, one key per pair."""
    return np.asarray(users).astype(np.int64) * num_items + np.asarray(items).astype(np.int64)


def sorted_unique(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct keys (a sort, not ``np.unique``: that takes a slow hash path on
    large int arrays in recent numpy)."""
    keys = np.sort(keys)
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys


def contains_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Vectorised membership of ``keys`` in a sorted array (empty arrays allowed)."""
    if len(sorted_keys) == 0:
        return np.zeros(np.shape(keys), dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == keys


class KnownPairs:
    """The set of (user, item) pairs a user has interacted with."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int) -> None:
        self.num_items = int(num_items)
        self.keys = sorted_unique(pair_keys(users, items, self.num_items))

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Elementwise: is ``(users[j], items[j])`` a known pair?"""
        return contains_sorted(self.keys, pair_keys(users, items, self.num_items))
