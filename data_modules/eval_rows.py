"""Evaluation batches built by slicing precomputed arrays, one whole batch per step.

The dataset is indexed by a *range of rows*, not by one row, so a batch is built
with a few vectorised numpy gathers instead of collating hundreds of tiny samples.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from data_modules.interactions import Histories


def shard_bounds(num_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous slice of rows owned by ``rank``: every row exactly once, no padding."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return num_rows * rank // world_size, num_rows * (rank + 1) // world_size


class RangeBatches(Sampler[slice]):
    """Yields consecutive ``slice(start, stop)`` of at most ``batch_size`` rows in ``[lo, hi)``."""

    def __init__(self, lo: int, hi: int, batch_size: int) -> None:
        self.lo, self.hi, self.batch_size = lo, hi, batch_size

    def __iter__(self) -> Iterator[slice]:
        for start in range(self.lo, self.hi, self.batch_size):
            yield slice(start, min(start + self.batch_size, self.hi))

    def __len__(self) -> int:
        return -(-(self.hi - self.lo) // self.batch_size)


def csr_gather(hist: Histories, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row index, item) for every item of each user's history, rows in batch order."""
    starts = hist.indptr[users]
    lens = hist.indptr[users + 1] - starts
    total = int(lens.sum())
    rows = np.repeat(np.arange(len(users)), lens)
    offsets = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    return rows, hist.items[np.repeat(starts, lens) + offsets]


class EvalRows(Dataset):
    """The evaluated rows of one split: ``dataset[slice]`` is a ready batch dict.

    ``mask_known`` adds the flattened (row, item) pairs of the context history the
    full-ranking protocol removes from the ranking, except the row's own target
    (a re-consumed item is still a correct prediction).
    """

    def __init__(
        self,
        users: np.ndarray,
        targets: np.ndarray,
        context: Histories,
        max_history: int,
        candidates: np.ndarray | None = None,
        mask_known: bool = False,
    ) -> None:
        # Own writable copies: torch.from_numpy refuses read-only DataFrame views.
        self.users = np.array(users, dtype=np.int64)
        self.targets = np.array(targets, dtype=np.int64)
        self.context = context
        self.max_history, self.candidates, self.mask_known = max_history, candidates, mask_known

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, rows: slice) -> dict[str, torch.Tensor]:
        users, targets = self.users[rows], self.targets[rows]
        batch = {
            "user": torch.from_numpy(users),
            "history": torch.from_numpy(self.context.padded(users, self.max_history)),
            "target": torch.from_numpy(targets),
        }
        if self.candidates is not None:
            batch["candidates"] = torch.from_numpy(np.ascontiguousarray(self.candidates[rows]))
        if self.mask_known:
            mask_rows, mask_items = csr_gather(self.context, users)
            keep = mask_items != targets[mask_rows]
            batch["mask_rows"] = torch.from_numpy(mask_rows[keep])
            batch["mask_items"] = torch.from_numpy(mask_items[keep])
        return batch
