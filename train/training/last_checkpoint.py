"""``last.ckpt`` after every epoch, not only after the epochs that improved.

With ``save_last=True`` Lightning (2.6) refreshes ``last.ckpt`` only when it has just
saved a top-k checkpoint, so after epochs that did not improve the monitored metric
``last.ckpt`` still holds the last improving epoch, and ``resume=`` redoes every epoch
since (up to the early-stopping patience: the results are the same, the time is lost).
This subclass also writes it when nothing else was saved. It keeps Lightning's class
name so that checkpoints keep the same callback state key either way.
"""
from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint``; with ``save_last`` set, ``last.ckpt`` follows every save point."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        """Save ``last.ckpt`` unless this step saved already (then it did so too) or must not save."""
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
