"""Training batches for sequence models (SASRec, BERT4Rec), built without per-sample loops.

:class:`SequenceTrainingSet` cuts each user's training history into windows of
``max_len + 1`` items, left-padded with :data:`PAD`, and stores them once as one tensor.
A ``DataLoader`` over it fetches a whole batch with a single slice (``__getitems__``) and
a collate turns the window into model inputs:

- :func:`causal_collate` (SASRec): ``history = window[:-1]``, ``targets = window[1:]``;
- :func:`masked_collate` (BERT4Rec): the last ``max_len`` items with some replaced by the
  mask token :data:`MASK` (``-2``; the model maps it to its [MASK] row), ``targets`` the
  original item at masked positions.

``targets`` is ``-1`` wherever a position has nothing to predict.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from data_modules.interactions import PAD, Histories

MASK = -2  # mask token in histories; recmodels.bert4rec.MASK has the same value

Batch = dict[str, Tensor]


class SequenceTrainingSet(Dataset):
    """Windows of ``max_len + 1`` items per user (input + shifted target), left-padded.

    ``sliding_windows=False`` keeps one window per user (the most recent items);
    ``True`` tiles long histories with stride ``max_len`` so every item but the first is a
    target exactly once; an int sets the stride (1..max_len; smaller strides overlap).
    Users with fewer than 2 items have no target and are skipped (counted in ``report``).
    """

    def __init__(self, histories: Histories, max_len: int, sliding_windows: bool | int = False):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1; got {max_len}")
        self.max_len = max_len
        window = max_len + 1
        stride = _stride(sliding_windows, max_len)
        lengths = histories.lengths
        users = np.flatnonzero(lengths >= 2)
        n = lengths[users]
        if stride is None:
            counts = np.ones(len(users), dtype=np.int64)
        else:  # enough windows, stepping back by `stride`, to reach the first target
            counts = 1 + np.maximum(0, -(-(n - window) // stride))
        example_users = np.repeat(users, counts)
        first = np.repeat(np.cumsum(counts) - counts, counts)
        step = np.arange(len(example_users)) - first
        ends = histories.indptr[example_users + 1] - step * (stride or 0)
        starts = np.maximum(histories.indptr[example_users], ends - window)
        self.sequences = torch.from_numpy(_left_padded(histories.items, starts, ends, window))
        self.users = torch.from_numpy(example_users.astype(np.int64))
        # Real items per window, kept on the host: batch widths are known without a device sync.
        self.lengths = (ends - starts).astype(np.int64)
        self.report = {
            "examples": len(example_users),
            "users": len(users),
            "skipped_users_fewer_than_2_items": int((lengths < 2).sum()),
            "targets": int((ends - starts - 1).sum()),
        }

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, index: int) -> Batch:
        return {"user": self.users[index], "sequence": self.sequences[index].long()}

    def __getitems__(self, indices: list[int] | Tensor) -> Batch:
        """A whole batch with one slice (used by ``DataLoader`` when present).

        ``indices`` may be a tensor on the windows' device: the slice then stays there.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        return {"user": self.users[idx], "sequence": self.sequences[idx].long()}

    def to(self, device: torch.device | str) -> SequenceTrainingSet:
        """These windows with their tensors on ``device`` (``self`` keeps its own)."""
        moved = copy.copy(self)
        moved.sequences = self.sequences.to(device)
        moved.users = self.users.to(device)
        return moved


def _stride(sliding_windows: bool | int, max_len: int) -> int | None:
    if sliding_windows is False:
        return None
    if sliding_windows is True:
        return max_len
    stride = int(sliding_windows)
    if not 1 <= stride <= max_len:
        raise ValueError(
            f"sliding window stride must be in 1..max_len={max_len} (a larger stride would "
            f"leave items that are never targets); got {sliding_windows}"
        )
    return stride


def _left_padded(items: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """items[starts[e]:ends[e]] right-aligned in rows of ``width``, padded with PAD."""
    dtype = np.int32 if items.size == 0 or items.max() < np.iinfo(np.int32).max else np.int64
    out = np.full((len(starts), width), PAD, dtype=dtype)
    cols = np.arange(width)
    valid = cols[None, :] >= (width - (ends - starts))[:, None]
    src = ends[:, None] - (width - cols)[None, :]
    out[valid] = items[src[valid]]
    return out


def _as_batch(data: Batch | list[Batch]) -> Batch:
    """Accept a ``__getitems__`` batch or (fallback) a list of single examples."""
    if isinstance(data, dict):
        return data
    return {key: torch.stack([d[key] for d in data]) for key in data[0]}


def causal_collate(data: Batch | list[Batch]) -> Batch:
    """Next-item batch: {"user" [B], "history" [B,L], "targets" [B,L] (-1 = none)}."""
    batch = _as_batch(data)
    seq = batch["sequence"]
    history = seq[:, :-1].contiguous()
    targets = seq[:, 1:].masked_fill(history < 0, PAD)
    return {"user": batch["user"], "history": history, "targets": targets}


class MaskedCollate:
    """Cloze batches for BERT4Rec (see :func:`masked_collate`); picklable for workers."""

    def __init__(
        self,
        mask_prob: float,
        mask_token: int = MASK,
        generator: torch.Generator | None = None,
        last_item_prob: float = 0.0,
    ) -> None:
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"mask_prob must lie in (0, 1); got {mask_prob}")
        if not 0.0 <= last_item_prob <= 1.0:
            raise ValueError(f"last_item_prob must lie in [0, 1]; got {last_item_prob}")
        if mask_token >= 0 or mask_token == PAD:
            raise ValueError(f"mask_token must be negative and differ from PAD={PAD}; got {mask_token}")
        self.mask_prob = mask_prob
        self.mask_token = mask_token
        self.generator = generator
        self.last_item_prob = last_item_prob

    def __call__(self, data: Batch | list[Batch]) -> Batch:
        batch = _as_batch(data)
        seq = batch["sequence"][:, 1:]  # the most recent max_len items
        rows, length = seq.shape
        real = seq >= 0
        gen, device = self.generator, seq.device
        masked = (torch.rand(rows, length, generator=gen, device=device) < self.mask_prob) & real
        if self.last_item_prob > 0:
            masked[:, -1] |= (torch.rand(rows, generator=gen, device=device) < self.last_item_prob) & real[:, -1]
        # Rows left without a mask get one uniformly among their real (rightmost) items;
        # written as a scatter rather than selecting those rows, so no device sync.
        n_real = real.sum(1)
        draw = torch.rand(rows, generator=gen, device=device)
        offset = (draw * n_real).long().clamp_max((n_real - 1).clamp_min(0))
        empty = ~masked.any(1) & (n_real > 0)
        picked = (length - 1 - offset).unsqueeze(1)
        masked.scatter_(1, picked, masked.gather(1, picked) | empty.unsqueeze(1))
        return {
            "user": batch["user"],
            "history": seq.masked_fill(masked, self.mask_token),
            "targets": seq.masked_fill(~masked, PAD),
        }


def masked_collate(
    mask_prob: float,
    mask_token: int = MASK,
    generator: torch.Generator | None = None,
    last_item_prob: float = 0.0,
) -> MaskedCollate:
    """Collate for BERT4Rec: each real item masked with ``mask_prob`` (at least one per row).

    ``last_item_prob`` additionally masks the most recent item of a row with that
    probability, imitating the inference setting (a [MASK] after the history). Padding is
    never masked. A shared ``generator`` is copied into each ``DataLoader`` worker, so
    with ``num_workers > 0`` leave it ``None`` (workers are seeded separately).
    """
    return MaskedCollate(mask_prob, mask_token, generator, last_item_prob)
