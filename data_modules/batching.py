"""Whole-batch sampling: the sampler yields index arrays, the dataset slices tensors.

Building a batch by slicing pre-built arrays is far faster than collating per-example
Python objects. The sampler also owns the shuffling seed and the rank's shard, so the
data order is a pure function of (seed, epoch, rank): resuming at an epoch replays it.

Long, uneven histories waste most of a padded batch: a batch mixing 5-item and
1,000-item windows is 1,000 wide for all its rows. With ``group_batches=N`` (and the
examples' ``lengths``) each run of N shuffled batches is sorted by length before it is
cut, and the batches are then shuffled again, so a batch holds windows of similar length
and is trimmed to them, on every device, while each epoch still visits every example
once in a random order (the bucketing of fairseq and of Transformers' ``group_by_length``).

Grouping makes batches of very different sizes: a batch of 5-item histories holds a
fraction of the targets of a batch of long ones. A loss averaged per batch would then
give each target of a short batch far more weight than a target of a long one (and the
model would learn more slowly, measured in docs/hstu.md). So a grouped batch also carries
``weight``: its share of the epoch's targets, ``sum(lengths in batch) / mean over the
epoch's batches``. Multiplying the batch's mean loss by it weighs every target alike,
as one mean over the epoch's targets would (``lengths`` count each example's targets).
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
    weight: float | None = None  # the batch's share of the epoch's targets (grouped batches only)


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
        lengths: np.ndarray | None = None,
        group_batches: int = 0,
    ) -> None:
        """``lengths``: each example's target count (grouping sorts by it and weighs by it)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        check_group_batches(group_batches)
        if group_batches and (lengths is None or len(lengths) != num_examples):
            raise ValueError(f"group_batches={group_batches} needs one length per example ({num_examples})")
        if num_examples < world_size:
            raise ValueError(f"{num_examples} training examples cannot be shared by {world_size} ranks")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.group_batches = group_batches
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
        grouped = bool(self.group_batches and self.shuffle)
        if grouped:
            batches = self._grouped(shard[:stop])
        else:
            batches = [shard[start : start + self.batch_size] for start in range(0, stop, self.batch_size)]
        weights = self._target_weights(batches) if grouped else [None] * len(batches)
        for number, (indices, weight) in enumerate(zip(batches, weights)):
            yield BatchKey(self.epoch, number, indices, self.seed + 7919 * self.rank, weight)

    def _target_weights(self, batches: list[np.ndarray]) -> list[float]:
        """Each batch's targets over the mean per batch of this rank's epoch (mean 1)."""
        targets = np.array([self.lengths[b].sum() for b in batches], dtype=np.float64)
        mean = targets.mean() if len(targets) else 1.0
        return (targets / mean).tolist() if mean > 0 else [1.0] * len(batches)

    def _grouped(self, shard: np.ndarray) -> list[np.ndarray]:
        """The same examples and batch count, batches cut from length-sorted runs of
        ``group_batches`` batches, then shuffled (the last, shorter batch included)."""
        span = self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(shard), span):
            run = shard[start : start + span]
            run = run[np.argsort(-self.lengths[run], kind="stable")]
            batches.extend(run[i : i + self.batch_size] for i in range(0, len(run), self.batch_size))
        order = np.random.default_rng([self.seed, self.epoch, self.rank, 1]).permutation(len(batches))
        return [batches[i] for i in order]

    def __len__(self) -> int:
        per_rank = len(self._pool()) // self.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)


def check_group_batches(value: object) -> int:
    """``group_by_length`` must be 0 (off) or a positive whole number of batches."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            f"model.datamodule.group_by_length must be 0 (off) or the number of batches sorted by "
            f"length together, e.g. 50; got {value!r}"
        )
    return int(value)


def batch_generator(key: BatchKey) -> np.random.Generator:
    """Random stream for one batch, independent of how many batches ran before."""
    return np.random.default_rng([key.seed, key.epoch, key.number])
