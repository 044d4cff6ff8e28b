"""A stop decision (early stopping) survives a resume.

Lightning saves the early-stopping counters but not ``trainer.should_stop``. A run killed
after early stopping ended its fit (while its best checkpoint is validated and tested)
would, resumed from its ``last.ckpt``, train another epoch before the counters stop it
again: more epochs, possibly another best checkpoint. The flag is saved with every
checkpoint (early stopping decides before the checkpoint callback saves) and set again
when the resumed fit starts, so it ends where the uninterrupted one did.
"""
from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class StopRequest(pl.Callback):
    """Saves ``trainer.should_stop`` in checkpoints; restores it when training starts."""

    def __init__(self) -> None:
        self._trainer: pl.Trainer | None = None
        self.restored = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        return {"should_stop": bool(self._trainer is not None and self._trainer.should_stop)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = bool(state_dict.get("should_stop", False))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.restored:
            log.info("training had already been stopped (e.g. by early stopping) when the checkpoint was "
                     "written; the resumed run trains no further")
            trainer.should_stop = True
        self.restored = False
