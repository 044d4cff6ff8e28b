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

    def rows(self, *splits: int) -> pd.DataFrame:
        mask = self.interactions["split"].isin(splits).to_numpy()
        return self.interactions[mask]

    def histories(self, *splits: int) -> Histories:
        """Chronological per-user sequences restricted to the given splits."""
        rows = self.rows(*splits)
        counts = np.bincount(rows["user"].to_numpy(), minlength=self.num_users)
        indptr = np.zeros(self.num_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return Histories(indptr=indptr, items=rows["item"].to_numpy(dtype=np.int64))

    def targets(self, split: int) -> tuple[np.ndarray, np.ndarray]:
        """(users, target items) of an evaluation split, one row per held-out interaction."""
        rows = self.rows(split)
        return rows["user"].to_numpy(dtype=np.int64), rows["item"].to_numpy(dtype=np.int64)

    def context_splits(self, split: int) -> tuple[int, ...]:
        """Splits a model may see when predicting ``split`` (validation sees train only)."""
        return (TRAIN,) if split == VAL else (TRAIN, VAL)

    def item_popularity(self) -> np.ndarray:
        """Training interaction count per item."""
        return np.bincount(self.rows(TRAIN)["item"].to_numpy(), minlength=self.num_items)

    def summary(self) -> str:
        counts = self.interactions["split"].value_counts().to_dict()
        return (
            f"{self.name}: {self.num_users} users, {self.num_items} items, "
            f"{len(self.interactions)} interactions "
            f"(train {counts.get(TRAIN, 0)}, val {counts.get(VAL, 0)}, test {counts.get(TEST, 0)})"
        )
