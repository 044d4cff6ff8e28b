"""LightningDataModule plumbing shared by every model family.

A data module gets the one :class:`InteractionData` and the description of its
evaluation rows (:class:`~data_modules.eval_spec.EvalSpec`); it owns the training
batches. Validation and test loaders are built from that description, sharded by rank
without padding, so every user is evaluated exactly once. What a curriculum may change
is declared by :class:`~data_modules.curriculum_target.CurriculumTarget`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from data_modules.batching import EpochBatchSampler
from data_modules.curriculum_target import PoolSource
from data_modules.eval_spec import EvalSpec
from data_modules.interactions import TEST, VAL, InteractionData
from data_modules.negatives import DrawsNegatives


class RecDataModule(pl.LightningDataModule):
    """Base: subclasses build ``self.train_set`` (a dataset indexed by BatchKey)."""

    def __init__(self, data: InteractionData, eval_spec: EvalSpec | None, batch_size: int = 256, seed: int = 0) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.data = data
        self.eval_spec = eval_spec
        self.batch_size = batch_size
        self.seed = seed
        self.train_set: Any = None
        self.train_sampler: EpochBatchSampler | None = None
        self._train_pool: PoolSource | None = None
        self.group_by_length = 0  # batches sorted by example length together (batching.py)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    # -- training -----------------------------------------------------------------------
    def num_train_examples(self) -> int:
        return len(self.train_set)

    def example_lengths(self) -> np.ndarray:
        """Length of each training example, for batches of similar lengths."""
        raise ValueError(f"{type(self).__name__} has examples of one length; group_by_length does not apply")

    def make_train_sampler(self) -> EpochBatchSampler:
        """This rank's shuffled batches, restricted to the curriculum's pool if one is set."""
        rank, world = self._rank_world()
        group = self.group_by_length
        sampler = EpochBatchSampler(
            self.num_train_examples(), self.batch_size, shuffle=True, seed=self.seed, rank=rank, world_size=world,
            lengths=self.example_lengths() if group else None, group_batches=group,
        )
        if self._train_pool is not None:
            sampler.allowed = self._train_pool()
        self.train_sampler = sampler
        return sampler

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, sampler=self.make_train_sampler(), batch_size=None, num_workers=0)

    # -- evaluation ---------------------------------------------------------------------
    def _eval_dataloader(self, split: int) -> DataLoader:
        if self.eval_spec is None:
            raise ValueError(f"{type(self).__name__} was built without an eval_spec, so it has no evaluation rows")
        return self.eval_spec.dataloader(self.data, split, *self._rank_world())

    def val_dataloader(self) -> DataLoader:
        return self._eval_dataloader(VAL)

    def test_dataloader(self) -> DataLoader:
        return self._eval_dataloader(TEST)

    # -- what a curriculum may change (CurriculumTarget) ---------------------------------
    def set_train_pool(self, pool: PoolSource | None) -> None:
        """Ask ``pool`` for the allowed example indices whenever an epoch's sampler is built."""
        self._train_pool = pool

    @property
    def negative_sampler(self) -> DrawsNegatives | None:
        return None

    @negative_sampler.setter
    def negative_sampler(self, sampler: DrawsNegatives) -> None:
        raise ValueError(f"{type(self).__name__} draws no negatives in the data pipeline")

    @property
    def max_len(self) -> int | None:
        return None

    @max_len.setter
    def max_len(self, value: int) -> None:
        raise ValueError(f"{type(self).__name__} builds no training windows to truncate")

    @property
    def mask_ratio(self) -> float | None:
        return None

    @mask_ratio.setter
    def mask_ratio(self, value: float) -> None:
        raise ValueError(f"{type(self).__name__} has no masked objective")
