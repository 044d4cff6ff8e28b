"""LightningDataModule plumbing shared by every model family.

A data module gets the one :class:`InteractionData` and the one evaluator; it owns only
the training batches. Validation and test loaders come from the evaluator, sharded by
rank without padding, so every user is evaluated exactly once.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from data_modules.batching import EpochBatchSampler
from data_modules.interactions import TEST, VAL, InteractionData


class RecDataModule(pl.LightningDataModule):
    """Base: subclasses build ``self.train_set`` (a dataset indexed by BatchKey)."""

    def __init__(self, data: InteractionData, evaluator: Any, batch_size: int = 256, seed: int = 0) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.data = data
        self.evaluator = evaluator
        self.batch_size = batch_size
        self.seed = seed
        self.train_set: Any = None
        self.train_sampler: EpochBatchSampler | None = None
        # Curriculum hook (train/curriculum): called once per epoch when the training
        # loader is built; returns the example indices that epoch may draw (None = all).
        self.train_pool: Callable[[], np.ndarray | None] | None = None

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def num_train_examples(self) -> int:
        return len(self.train_set)

    def make_train_sampler(self) -> EpochBatchSampler:
        """This rank's shuffled batches, restricted to the curriculum's pool if one is set."""
        rank, world = self._rank_world()
        sampler = EpochBatchSampler(
            self.num_train_examples(), self.batch_size, shuffle=True, seed=self.seed, rank=rank, world_size=world
        )
        if self.train_pool is not None:
            sampler.allowed = self.train_pool()
        self.train_sampler = sampler
        return sampler

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, sampler=self.make_train_sampler(), batch_size=None, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return self.evaluator.dataloader(self.data, VAL, *self._rank_world())

    def test_dataloader(self) -> DataLoader:
        return self.evaluator.dataloader(self.data, TEST, *self._rank_world())
