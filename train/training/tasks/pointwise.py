"""Pointwise objective: binary cross-entropy on positives and sampled negatives (NCF)."""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from recmodels.base import Recommender
from train.evaluation import Evaluator
from train.training.tasks.base import OptimizerFactory, RecTask, SchedulerFactory


class PointwiseTask(RecTask):
    """Trains ``model(users, items) -> logits`` against 0/1 labels.

    Batches come from :class:`data_modules.pairs.PairDataModule`: ``user``, ``item``
    and ``label`` flattened over positives and their negatives. ``embedding_l2`` adds
    ``embedding_l2 * model.embedding_penalty(users, items)``: L2 on the embedding rows
    each batch uses (0 = the NCF paper's unregularised objective).
    """

    def __init__(
        self,
        model: Recommender,
        evaluator: Evaluator,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        lr_scaling: dict[str, Any] | None = None,
        embedding_l2: float = 0.0,
    ) -> None:
        super().__init__(model, evaluator, optimizer, scheduler, scheduler_interval, lr_scaling)
        if embedding_l2 < 0:
            raise ValueError(f"embedding_l2 must be >= 0, got {embedding_l2}")
        if embedding_l2 > 0 and not hasattr(self.model, "embedding_penalty"):
            raise ValueError(
                f"embedding_l2={embedding_l2} needs a model with embedding_penalty(users, items); "
                f"{type(self.model).__name__} has none, so set model.task.embedding_l2=0"
            )
        self.embedding_l2 = embedding_l2

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        users, items = batch["user"], batch["item"]
        loss = F.binary_cross_entropy_with_logits(self.model(users, items), batch["label"])
        if self.embedding_l2 > 0:
            loss = loss + self.embedding_l2 * self.model.embedding_penalty(users, items)
        return loss
