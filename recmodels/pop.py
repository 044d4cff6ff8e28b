"""Most-popular baseline: every user gets the same ranking by training counts."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from recmodels.base import Context, ItemScores, Recommender


class MostPopular(Recommender):
    """Scores items by how often they were interacted with in training.

    Reads no context values: any one key only tells it the batch size.
    """

    inputs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.register_buffer("counts", torch.zeros(num_items))

    @torch.no_grad()
    def fit(self, item_counts: Tensor) -> None:
        if item_counts.shape != (self.num_items,):
            raise ValueError(f"expected {self.num_items} item counts, got shape {tuple(item_counts.shape)}")
        self.counts.copy_(item_counts.float())

    def _batch_size(self, context: Context) -> int:
        key = "user" if "user" in context else "history"
        return context[key].shape[0]

    def score_all(self, context: Context) -> Tensor:
        return self.counts.unsqueeze(0).expand(self._batch_size(context), -1)

    def score_candidates(self, context: Context, candidates: Tensor) -> Tensor:
        return self.counts[candidates]

    def item_scores(self, context: Context) -> ItemScores:
        return _CountScores(self.counts, self._batch_size(context))


class _CountScores(ItemScores):
    """The same count row for every context, copied per range (callers mask in place)."""

    def __init__(self, counts: Tensor, batch: int) -> None:
        self.counts, self.batch = counts, batch

    def range(self, start: int, stop: int) -> Tensor:
        return self.counts[start:stop].float().repeat(self.batch, 1)

    def at(self, items: Tensor) -> Tensor:
        return self.counts[items].float()
