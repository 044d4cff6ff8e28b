"""LightningDataModule for sequence models (SASRec next-item, BERT4Rec cloze).

Training examples are the last ``max_len`` (+1 for the shifted target) items of each
user's TRAIN history, optionally tiled with sliding windows; batches are sliced from
one pre-built tensor. Evaluation rows come from the data module's
:class:`~data_modules.eval_spec.EvalSpec`: validation sees the history up to the
second-last item, test up to the last.
"""
from __future__ import annotations

import torch
from torch import Tensor

from data_modules.base import RecDataModule
from data_modules.batching import BatchKey
from data_modules.eval_spec import EvalSpec
from data_modules.interactions import TRAIN, InteractionData
from data_modules.sequence_windows import MaskedCollate, SequenceTrainingSet, causal_collate

OBJECTIVES = ("causal", "masked")


class SequenceBatches(torch.utils.data.Dataset):
    """Builds one collated batch per :class:`BatchKey`, deterministically.

    The cloze masking draws from a generator seeded by the batch key, so the same epoch
    and batch number always give the same masks (resumable, identical across restarts).
    ``max_len`` may be lowered between batches (a sequence-length curriculum): inputs are
    then cut to their most recent ``max_len`` positions.
    """

    def __init__(self, windows: SequenceTrainingSet, objective: str, mask_prob: float, last_item_prob: float) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.windows = windows
        self.objective = objective
        self.masked = MaskedCollate(mask_prob, last_item_prob=last_item_prob) if objective == "masked" else None
        self.max_len = windows.max_len

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def mask_prob(self) -> float | None:
        return self.masked.mask_prob if self.masked is not None else None

    @mask_prob.setter
    def mask_prob(self, value: float) -> None:
        if self.masked is None:
            raise ValueError("mask_prob applies to the masked (BERT4Rec) objective only")
        if not 0.0 < value < 1.0:
            raise ValueError(f"mask_prob must lie in (0, 1); got {value}")
        self.masked.mask_prob = value

    def __getitem__(self, key: BatchKey) -> dict[str, Tensor]:
        raw = self.windows.__getitems__(key.indices.tolist())
        if self.max_len < self.windows.max_len:
            raw = {**raw, "sequence": raw["sequence"][:, -(self.max_len + 1) :]}
        if self.masked is None:
            batch = causal_collate(raw)
        else:
            self.masked.generator = torch.Generator().manual_seed(hash((key.seed, key.epoch, key.number)) % 2**63)
            batch = self.masked(raw)
        # Drop columns that are padding for the whole batch: short histories cost less.
        real = (batch["history"] != -1).any(0).nonzero()
        first = int(real[0]) if len(real) else batch["history"].shape[1] - 1
        return {k: (v[:, first:] if v.dim() == 2 else v) for k, v in batch.items()}


class SequenceDataModule(RecDataModule):
    """Sequence batches: ``objective=causal`` (SASRec) or ``masked`` (BERT4Rec)."""

    def __init__(
        self,
        data: InteractionData,
        eval_spec: EvalSpec | None,
        batch_size: int = 128,
        max_len: int = 200,
        objective: str = "causal",
        mask_prob: float = 0.2,
        last_item_prob: float = 0.0,
        sliding_windows: bool | int = False,
        seed: int = 0,
    ) -> None:
        super().__init__(data, eval_spec, batch_size, seed)
        windows = SequenceTrainingSet(data.histories(TRAIN), max_len, sliding_windows)
        self.train_set = SequenceBatches(windows, objective, mask_prob, last_item_prob)

    @property
    def max_len(self) -> int | None:
        """Most recent items each training window keeps (at most the windows' width)."""
        return self.train_set.max_len

    @max_len.setter
    def max_len(self, value: int) -> None:
        width = self.train_set.windows.max_len
        if not 1 <= value <= width:
            raise ValueError(f"max_len must lie in 1..{width} (the training windows' width), got {value}")
        self.train_set.max_len = int(value)

    @property
    def mask_ratio(self) -> float | None:
        """The cloze mask ratio (None for the causal objective)."""
        return self.train_set.mask_prob

    @mask_ratio.setter
    def mask_ratio(self, value: float) -> None:
        self.train_set.mask_prob = value
