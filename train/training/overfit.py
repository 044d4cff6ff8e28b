"""``debug=overfit``: train every epoch on the same few batches; the loss should fall to ~0.

Lightning's own ``trainer.overfit_batches`` swaps the training sampler for a
``SequentialSampler`` of single indices, which recflow's whole-batch samplers
(:class:`~data_modules.batching.EpochBatchSampler`) cannot serve. This callback fixes
the examples instead, through the data module's declared training pool
(:class:`~data_modules.curriculum_target.CurriculumTarget.set_train_pool`): each epoch
draws the same ``batches * batch_size`` examples, reshuffled.
"""
from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl

log = logging.getLogger(__name__)

LOSS = "train/loss_epoch"


class OverfitBatches(pl.Callback):
    """Restrict training to the first ``batches`` batches' worth of examples per rank."""

    def __init__(self, batches: int = 3) -> None:
        if batches < 1:
            raise ValueError(f"debug=overfit needs batches >= 1, got {batches}")
        self.batches = batches
        self.losses: list[float] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "set_train_pool"):
            raise ValueError("debug=overfit needs a recflow data module (trainer.fit(task, datamodule=...))")
        size = min(datamodule.num_train_examples(), self.batches * datamodule.batch_size * trainer.world_size)
        pool = np.arange(size)
        datamodule.set_train_pool(lambda: pool)
        log.info("overfitting %d training examples (%d batches per rank)", size, self.batches)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if LOSS in trainer.callback_metrics:
            self.losses.append(float(trainer.callback_metrics[LOSS]))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.losses:
            log.info("overfit: %s %.4f after the first epoch, %.4f after the last (%d epochs)",
                     LOSS, self.losses[0], self.losses[-1], len(self.losses))
