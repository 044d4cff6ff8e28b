"""Lightning glue: drives a :class:`Curriculum` from the trainer's global step.

- ``setup``: binds the curriculum to ``trainer.datamodule`` (a
  :class:`~data_modules.curriculum_target.CurriculumTarget`); if it restricts the pool,
  hands the data module this callback's pool with ``set_train_pool`` and makes Lightning
  rebuild the training loader every epoch (so the epoch length follows the pool size).
- every epoch start and every batch end: moves to ``trainer.global_step`` and sets the
  per-step knobs for the next batch, logging competence, active fraction and knob values
  per step (``curriculum/<name>``) and as the epoch's mean (``curriculum/<name>_epoch``).
- ``state_dict``/``load_state_dict``: the schedule travels in checkpoints, so resuming
  mid-curriculum continues the same schedule.

The model and the task are never touched: only what the sampler and collate yield.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch import nn

from train.curriculum.curriculum import Curriculum
from train.curriculum.difficulty import Difficulty
from train.curriculum.knobs import Knob, require_in_process_loading


class CurriculumCallback(pl.Callback):
    """Build from ``conf/curriculum/*.yaml``: ``pacing`` + optional ``difficulty`` and ``knobs``."""

    def __init__(
        self,
        pacing: Mapping[str, Any],
        difficulty: Difficulty | None = None,
        knobs: Mapping[str, Knob | None] | Sequence[Knob] | None = None,
        log_prefix: str = "curriculum/",
    ) -> None:
        super().__init__()
        self.curriculum = Curriculum(pacing, difficulty, knobs)
        self.log_prefix = log_prefix
        self._trainer: pl.Trainer | None = None
        self._module: pl.LightningModule | None = None
        self._values: dict[str, float] = {}

    # -- wiring -----------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is None:
            raise ValueError("the curriculum needs the data module: call trainer.fit(task, datamodule=...)")
        self._trainer, self._module = trainer, pl_module
        self.curriculum.bind(datamodule, trainer.world_size, trainer.accumulate_grad_batches)
        if self.curriculum.difficulty is not None:
            datamodule.set_train_pool(self.epoch_pool)
            if not trainer.reload_dataloaders_every_n_epochs:
                trainer.reload_dataloaders_every_n_epochs = 1  # epoch length follows the pool

    def epoch_pool(self) -> np.ndarray | None:
        """The examples the epoch starting now may draw (asked when its loader is built)."""
        trainer = self._trainer
        return self.curriculum.epoch_pool(
            trainer.global_step, trainer.current_epoch, _model(self._module), self._broadcast
        )

    def _broadcast(self, obj: Any) -> Any:
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return obj
        return trainer.strategy.broadcast(obj, src=0)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.curriculum.difficulty is not None and self.curriculum.pool_calls == 0:
            raise ValueError(
                f"{type(trainer.datamodule).__name__} built its training loader without asking the curriculum "
                "for the pool; build the sampler with RecDataModule.make_train_sampler()"
            )
        if self.curriculum.knobs:
            require_in_process_loading(trainer.train_dataloader)

    # -- schedule -----------------------------------------------------------------------
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._values = self.curriculum.step(trainer.global_step, _model(pl_module), self._broadcast)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for name, value in self._values.items():  # what the batch just trained on saw
            pl_module.log(self.log_prefix + name, float(value), on_step=True, on_epoch=False, batch_size=1)
            # the epoch's mean too: with few steps per epoch the per-step points may never be written
            pl_module.log(self.log_prefix + name + "_epoch", float(value), on_step=False, on_epoch=True,
                          batch_size=1, sync_dist=True)
        self._values = self.curriculum.step(trainer.global_step, _model(pl_module), self._broadcast)

    # -- checkpoints ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return self.curriculum.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state_dict)


def _model(pl_module: pl.LightningModule) -> nn.Module:
    """The plain recmodels module a task wraps (tasks keep it as ``.model``)."""
    return getattr(pl_module, "model", pl_module)
