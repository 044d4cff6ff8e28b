"""Pointwise objective: binary cross-entropy on positives and sampled negatives (NCF)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from train.tasks.base import RecTask


class PointwiseTask(RecTask):
    """Trains ``model(users, items) -> logits`` against 0/1 labels.

    Batches come from :class:`data_modules.pairs.PairDataModule`: ``user``, ``item``
    and ``label`` flattened over positives and their negatives.
    """

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        logits = self.model(batch["user"], batch["item"])
        return F.binary_cross_entropy_with_logits(logits, batch["label"])
