"""Whole-batch sampling: the sampler yields index arrays, the dataset slices tensors.

Building a batch by slicing pre-built arrays is far faster than collating per-example
Python objects. The sampler also owns the shuffling seed and the rank's shard, so the
data order is a pure function of (seed, epoch, rank): resuming at an epoch replays it.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class BatchKey:
    """What a dataset needs to build one batch deterministically."""

    epoch: int
    number: int
    indices: np.ndarray
    seed: int


class EpochBatchSampler(torch.utils.data.Sampler):
    """Shuffled (or ordered) batches of one rank's shard of ``range(num_examples)``.

    Every rank gets the same number of batches (the last ``num_examples % world_size``
    examples of a shuffled epoch are left to the next epoch's shuffle), which keeps
    DDP/DeepSpeed ranks in step.
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if num_examples < world_size:
            raise ValueError(f"{num_examples} training examples cannot be shared by {world_size} ranks")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.allowed: np.ndarray | None = None  # a curriculum may restrict the pool

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pool(self) -> np.ndarray:
        return np.arange(self.num_examples) if self.allowed is None else self.allowed

    def _shard(self) -> np.ndarray:
        pool = self._pool()
        if self.shuffle:
            rng = np.random.default_rng([self.seed, self.epoch])
            pool = pool[rng.permutation(len(pool))]
        per_rank = len(pool) // self.world_size
        return pool[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[BatchKey]:
        shard = self._shard()
        stop = len(shard) - len(shard) % self.batch_size if self.drop_last else len(shard)
        for number, start in enumerate(range(0, stop, self.batch_size)):
            yield BatchKey(self.epoch, number, shard[start : start + self.batch_size], self.seed + 7919 * self.rank)

    def __len__(self) -> int:
        per_rank = len(self._pool()) // self.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)


def batch_generator(key: BatchKey) -> np.random.Generator:
    """Random stream for one batch, independent of how many batches ran before."""
    return np.random.default_rng([key.seed, key.epoch, key.number])
