"""The one data object every data module is built from.

Loaders turn files into an :class:`InteractionData`; preprocessing, splitting and the
side features all live here, so data modules, evaluation, inference and serving agree
on ids and on which interaction belongs to which split.

Conventions (relied upon everywhere):
- users are ``0..num_users-1`` and items ``0..num_items-1`` (dense internal ids);
  ``user_ids[u]`` / ``item_ids[i]`` give the raw ids back.
- ``interactions`` is sorted by (user, timestamp) with ties kept in file order, so a
  user's rows are that user's chronological history.
- ``split`` column: ``TRAIN``/``VAL``/``TEST`` (leave-one-out puts the last item in
  TEST and the second-last in VAL).
- Padded histories use :data:`PAD` (``-1``); models map it to their own padding row.
- Columns are compact: ``user``/``item`` int32 while the ids fit, ``split`` int8. A
  cached data set's columns are read-only memory maps (:mod:`data_modules.cache`), so
  processes that open the same cache share its pages; the hot paths here read the
  columns as arrays (:meth:`InteractionData.column`) instead of copying the frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

PAD = -1
TRAIN, VAL, TEST = 0, 1, 2
SPLIT_CODES = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass
class Histories:
    """Per-user item sequences in CSR form: user ``u`` owns ``items[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray
    items: np.ndarray

    def of(self, user: int) -> np.ndarray:
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def padded(self, users: np.ndarray, max_len: int) -> np.ndarray:
        """Last ``max_len`` items of each user's history, left-padded with :data:`PAD`."""
        users = np.asarray(users, dtype=np.int64)
        ends = self.indptr[users + 1]
        lengths = np.minimum(ends - self.indptr[users], max_len)
        out = np.full((len(users), max_len), PAD, dtype=np.int64)
        cols = np.arange(max_len)
        valid = cols[None, :] >= (max_len - lengths)[:, None]
        src = ends[:, None] - (max_len - cols)[None, :]
        out[valid] = self.items[src[valid]]
        return out


@dataclass
class InteractionData:
    """Interactions with dense ids, a split and optional side features."""

    interactions: pd.DataFrame
    user_ids: np.ndarray
    item_ids: np.ndarray
    name: str = "data"
    # Given evaluation candidates (negatives only), e.g. NCF's test.negative: split -> [U, N].
    eval_negatives: dict[str, np.ndarray] = field(default_factory=dict)
    item_features: pd.DataFrame | None = None  # index: internal item id
    user_features: pd.DataFrame | None = None  # index: internal user id
    # What preprocessing did (rows read, skipped and why, filtered): shown to the user.
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    def column(self, name: str) -> np.ndarray:
        """One column of ``interactions`` as an array, without a copy (read-only view)."""
        return self.interactions[name].to_numpy()

    def split_mask(self, *splits: int) -> np.ndarray | None:
        """Rows in ``splits``, or ``None`` when every row is (saves a full-length copy)."""
        mask = np.isin(self.column("split"), splits)
        return None if mask.all() else mask

    def rows(self, *splits: int) -> pd.DataFrame:
        mask = self.split_mask(*splits)
        return self.interactions.copy(deep=False) if mask is None else self.interactions[mask]

    def selected(self, name: str, *splits: int) -> np.ndarray:
        """Column ``name`` restricted to rows of ``splits`` (a view when that is every row)."""
        mask = self.split_mask(*splits)
        column = self.column(name)
        return column if mask is None else column[mask]

    def histories(self, *splits: int) -> Histories:
        """Chronological per-user sequences restricted to the given splits."""
        mask = self.split_mask(*splits)
        users, items = self.column("user"), self.column("item")
        if mask is not None:
            users, items = users[mask], items[mask]
        counts = np.bincount(users, minlength=self.num_users)
        indptr = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return Histories(indptr=indptr, items=items.astype(np.int64))

    def targets(self, split: int) -> tuple[np.ndarray, np.ndarray]:
        """(users, target items) of an evaluation split, one row per held-out interaction."""
        mask = self.column("split") == split
        return self.column("user")[mask].astype(np.int64), self.column("item")[mask].astype(np.int64)

    def context_splits(self, split: int) -> tuple[int, ...]:
        """Splits a model may see when predicting ``split`` (validation sees train only)."""
        return (TRAIN,) if split == VAL else (TRAIN, VAL)

    def item_popularity(self) -> np.ndarray:
        """Training interaction count per item."""
        return np.bincount(self.selected("item", TRAIN), minlength=self.num_items)

    def summary(self) -> str:
        counts = dict(enumerate(np.bincount(self.column("split").astype(np.intp), minlength=3).tolist()))
        return (
            f"{self.name}: {self.num_users} users, {self.num_items} items, "
            f"{len(self.interactions)} interactions "
            f"(train {counts.get(TRAIN, 0)}, val {counts.get(VAL, 0)}, test {counts.get(TEST, 0)})"
        )
