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
from train.training.lr_scaling import check_lr_scaling, lr_factor, scale_learning_rates

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
        lr_scaling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.evaluator = evaluator
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.lr_scaling = check_lr_scaling(lr_scaling)
        self.val_metrics = evaluator.new_metrics(model.num_items)
        self.test_metrics = evaluator.new_metrics(model.num_items)

    # -- training -----------------------------------------------------------------
    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self.training_loss(batch)
        size = self._batch_size(batch)
        self.log("train/loss_step", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=size)
        # The epoch mean over every rank's batches: synced once per epoch, not at every step.
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=size)
        weight = batch.get("loss_weight")
        # Batches of uneven size (grouped by length) carry their share of the epoch's
        # targets, so every target weighs the same (data_modules/batching.py).
        return loss if weight is None else loss * weight

    @staticmethod
    def _batch_size(batch: dict[str, Tensor]) -> int:
        return len(next(v for v in batch.values() if v.dim() > 0))

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise ValueError(f"{type(self).__name__} needs an optimizer: set model.task.optimizer in the config")
        optimizer = self.optimizer_factory(params=self.model.parameters())
        if self.lr_scaling is not None:
            scale_learning_rates(optimizer, lr_factor(self.lr_scaling, self.global_batch_size()))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def global_batch_size(self) -> int:
        """Examples per optimizer step over all devices: batch x world size x accumulation."""
        trainer = self.trainer
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        if batch_size is None:
            raise ValueError("model.task.lr_scaling needs a data module with a batch_size")
        return int(batch_size) * trainer.world_size * trainer.accumulate_grad_batches

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
        values = {f"{prefix}/{name}": value.float() for name, value in metrics.compute().items()}
        watched = self._monitored()
        for on_bar in (True, False):
            chosen = {name: value for name, value in values.items() if (name in watched) == on_bar}
            # compute() already summed the states of every rank, so each rank holds the same
            # value; the max over ranks keeps it exact and tells Lightning it is global.
            self.log_dict(chosen, prog_bar=on_bar, sync_dist=True, reduce_fx="max", rank_zero_only=False)
        metrics.reset()

    def _monitored(self) -> set[str]:
        """Metrics the trainer's callbacks watch (best checkpoint, early stopping): on the progress bar."""
        return {name for cb in self.trainer.callbacks if isinstance(name := getattr(cb, "monitor", None), str)}
