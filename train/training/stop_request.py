"""A stop decision (early stopping) survives a resume; a time limit does not.

Lightning saves the early-stopping counters but not ``trainer.should_stop``. A run killed
after early stopping ended its fit (while its best checkpoint is validated and tested)
would, resumed from its ``last.ckpt``, train another epoch before the counters stop it
again: more epochs, possibly another best checkpoint. The flag is saved with every
checkpoint (early stopping decides before the checkpoint callback saves) and set again
when the resumed fit starts, so it ends where the uninterrupted one did.

A stop by ``trainer.max_time`` alone is not saved: the time limit belongs to the command,
and ``resume=<run> trainer.max_time=<longer>`` is how a run stopped by its budget gets
more time (the elapsed time is restored, so the new limit counts the whole run).
"""
from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import EarlyStopping, Timer

log = logging.getLogger(__name__)


class StopRequest(pl.Callback):
    """Saves ``trainer.should_stop`` in checkpoints; restores it when training starts."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self.restored = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        trainer = self._trainer
        return {"should_stop": bool(trainer is not None and trainer.should_stop and not stopped_by_time_limit(trainer))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = bool(state_dict.get("should_stop", False))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restored:
            log.info("training had already been stopped (e.g. by early stopping) when the checkpoint was "
                     "written; the resumed run trains no further")
            trainer.should_stop = True
        self.restored = False


def stopped_by_time_limit(trainer: pl.Trainer) -> bool:
    """True when the time limit is spent and no early stopping has decided to stop."""
    if any(isinstance(cb, EarlyStopping) and cb.stopped_epoch > 0 for cb in trainer.callbacks):
        return False
    remaining = [cb.time_remaining() for cb in trainer.callbacks if isinstance(cb, Timer)]
    return any(seconds is not None and seconds <= 0 for seconds in remaining)
