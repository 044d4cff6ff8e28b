"""One view of a training set's examples, whatever batches it builds.

Difficulty scorers need, per training example, its user, its target items, a context
history and a length. Pair data (NCF) has one (user, item) per example; sequence data
(SASRec, BERT4Rec) has one window of items per example. Both are described here by
duck typing on the dataset's arrays, so scorers are written once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data_modules.interactions import PAD


@dataclass
class TrainExamples:
    """Per-example arrays, all of length ``N`` (the dataset's length)."""

    users: np.ndarray  # [N] int64
    targets: np.ndarray  # [N, T] int64 target items, PAD where none
    lengths: np.ndarray  # [N] history length (items the example sees)
    num_items: int
    item_counts: np.ndarray  # [num_items] training interactions per item
    history: np.ndarray | None = None  # [N, L] context of the last target, left-padded; None = user only

    def __len__(self) -> int:
        return len(self.users)

    @property
    def last_target(self) -> np.ndarray:
        """The most recent target of every example (the one self-paced losses score)."""
        return self.targets[:, -1]


def _numpy(array: Any) -> np.ndarray:
    return array.numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def describe_examples(train_set: Any, num_items: int, item_counts: np.ndarray | None = None) -> TrainExamples:
    """Build the view from a sequence set (``sequences``) or a pair set (``users``/``items``).

    A batch-building wrapper around a sequence set (``windows``) is looked through.
    """
    train_set = getattr(train_set, "windows", train_set)
    if hasattr(train_set, "sequences"):
        return _sequence_examples(train_set, num_items, item_counts)
    if hasattr(train_set, "users") and hasattr(train_set, "items"):
        return _pair_examples(train_set, num_items, item_counts)
    raise TypeError(
        f"a curriculum cannot describe {type(train_set).__name__}: the training set needs either "
        "`sequences` [N, L+1] (sequence windows) or `users` and `items` [N] (pairs)"
    )


def _counts(targets: np.ndarray, num_items: int, item_counts: np.ndarray | None) -> np.ndarray:
    if item_counts is not None:
        counts = np.asarray(item_counts, dtype=np.int64)
        if counts.shape != (num_items,):
            raise ValueError(f"item_counts must have {num_items} entries, got shape {counts.shape}")
        return counts
    return np.bincount(targets[targets >= 0], minlength=num_items)


def _sequence_examples(train_set: Any, num_items: int, item_counts: np.ndarray | None) -> TrainExamples:
    windows = _numpy(train_set.sequences).astype(np.int64)
    history = windows[:, :-1]
    targets = np.where(history >= 0, windows[:, 1:], PAD)
    return TrainExamples(
        users=_numpy(train_set.users).astype(np.int64),
        targets=targets,
        lengths=(history >= 0).sum(1),
        num_items=num_items,
        item_counts=_counts(targets, num_items, item_counts),
        history=history,
    )


def _pair_examples(train_set: Any, num_items: int, item_counts: np.ndarray | None) -> TrainExamples:
    users = _numpy(train_set.users).astype(np.int64)
    items = _numpy(train_set.items).astype(np.int64)
    per_user = np.bincount(users)
    return TrainExamples(
        users=users,
        targets=items[:, None],
        lengths=per_user[users],
        num_items=num_items,
        item_counts=_counts(items, num_items, item_counts),
    )


def row_chunks(total: int, size: int) -> list[slice]:
    """Consecutive row slices of at most ``size`` (model scoring in bounded memory)."""
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]
