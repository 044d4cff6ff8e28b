"""Shared Lightning plumbing: evaluation, optimisers and schedulers from config.

Every task wraps one plain ``recmodels`` module. Validation and test go through the
one evaluator, so each objective only has to say how to compute its training loss.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from recmodels.base import Recommender
from train.evaluation import Evaluator

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]


class RecTask(pl.LightningModule):
    """Base task: subclasses implement :meth:`training_loss`."""

    def __init__(
        self,
        model: Recommender,
        evaluator: Evaluator,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
    ) -> None:
        super().__init__()
        self.model = model
        self.evaluator = evaluator
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.val_metrics = evaluator.new_metrics(model.num_items)
        self.test_metrics = evaluator.new_metrics(model.num_items)

    # -- training -----------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=self._batch_size(batch))
        return loss

    @staticmethod
    def _batch_size(batch: dict[str, Tensor]) -> int:
        return len(next(iter(batch.values())))

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError(f"{type(self).__name__} needs an optimizer: set model.task.optimizer in the config")
        optimizer = self.optimizer_factory(params=self.model.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    # -- evaluation ---------------------------------------------------------------
    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluator.update(self.val_metrics, self.model, batch)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.evaluator.update(self.test_metrics, self.model, batch)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _log_metrics(self, prefix: str, metrics: Any) -> None:
        # compute() already sums states across ranks, so no further sync is needed.
        values = {f"{prefix}/{name}": value.float() for name, value in metrics.compute().items()}
        self.log_dict(values, prog_bar=False, sync_dist=False, rank_zero_only=False)
        metrics.reset()
