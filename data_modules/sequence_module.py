"""LightningDataModule for sequence models (SASRec next-item, BERT4Rec cloze).

Training examples are the last ``max_len`` (+1 for the shifted target) items of each
user's TRAIN history, optionally tiled with sliding windows; batches are sliced from
one pre-built tensor. Evaluation rows come from the data module's
:class:`~data_modules.eval_spec.EvalSpec`: validation sees the history up to the
second-last item, test up to the last.

``device_batches=True`` keeps the training windows on the trainer's device and builds
every batch there (see :class:`SequenceBatches`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from data_modules.base import RecDataModule
from data_modules.batching import BatchKey, check_group_batches
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

    :meth:`place` copies the windows to a device once; batches are then sliced, collated
    and masked there, with nothing copied per batch but the batch's indices. Columns that
    are padding for the whole batch are dropped using window lengths kept on the host, so
    no step waits on the device. On the CPU the batches equal those of the default path;
    on an accelerator the cloze masks come from that device's generator (seeded from the
    batch key just the same), a different but equally reproducible random stream.
    """

    def __init__(self, windows: SequenceTrainingSet, objective: str, mask_prob: float, last_item_prob: float) -> None:
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        self.windows = windows  # on the host: what a curriculum reads to describe the examples
        self.source = windows  # where batches are sliced from (``windows`` or its copy on a device)
        self.objective = objective
        self.masked = MaskedCollate(mask_prob, last_item_prob=last_item_prob) if objective == "masked" else None
        self.max_len = windows.max_len

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def device(self) -> torch.device:
        """Where batches are built."""
        return self.source.sequences.device

    def place(self, device: torch.device | str) -> None:
        """Build batches on ``device`` from now on (the windows are copied there once)."""
        device = torch.device(device)
        if device != self.device:
            self.source = self.windows.to(device)

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
        raw = self.source.__getitems__(_indices_on(self.device, key.indices))
        if self.max_len < self.windows.max_len:
            raw = {**raw, "sequence": raw["sequence"][:, -(self.max_len + 1) :]}
        if self.masked is None:
            batch = causal_collate(raw)
        else:
            seed = hash((key.seed, key.epoch, key.number)) % 2**63
            self.masked.generator = torch.Generator(self.device).manual_seed(seed)
            batch = self.masked(raw)
        # Drop columns that are padding for the whole batch: short histories cost less.
        longest = int(self.history_lengths(self.windows.lengths[key.indices]).max(initial=1))
        first = self.max_len - longest
        batch = {k: (v[:, first:] if v.dim() == 2 else v) for k, v in batch.items()}
        if key.weight is not None:  # grouped batches: weigh every target alike (batching.py)
            batch["loss_weight"] = torch.tensor(key.weight, dtype=torch.float32, device=self.device)
        return batch

    def history_lengths(self, window_lengths: np.ndarray) -> np.ndarray:
        """Real (non-padding) history positions of each row, from its window's item count."""
        if self.masked is None:  # the window's last item is only a target
            return np.minimum(window_lengths, self.max_len + 1) - 1
        return np.minimum(window_lengths, self.max_len)  # masked items stay in the history


def _indices_on(device: torch.device, indices: np.ndarray) -> Tensor:
    """A batch's example indices on ``device``; page-locked first so the copy does not block."""
    host = torch.from_numpy(np.asarray(indices, dtype=np.int64))
    if device.type == "cuda":
        host = host.pin_memory()
    return host.to(device, non_blocking=True)


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
        device_batches: bool = False,
        group_by_length: int = 0,
    ) -> None:
        super().__init__(data, eval_spec, batch_size, seed)
        self.group_by_length = check_group_batches(group_by_length)
        windows = SequenceTrainingSet(data.histories(TRAIN), max_len, sliding_windows)
        self.train_set = SequenceBatches(windows, objective, mask_prob, last_item_prob)
        self.device_batches = device_batches

    def example_lengths(self) -> np.ndarray:
        """Real history positions of each window: its width in a batch and, for the causal
        objective, its target count (masked targets are a fixed share of it on average)."""
        return self.train_set.history_lengths(self.train_set.windows.lengths)

    def train_dataloader(self) -> DataLoader:
        """With ``device_batches`` the loader yields batches already on the training device."""
        if self.device_batches:
            self.train_set.place(self._training_device())
        return super().train_dataloader()

    def _training_device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

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
