"""Most-popular baseline: fitted from training counts, nothing to optimise."""
from __future__ import annotations

import torch
from torch import Tensor

from recmodels.pop import MostPopular
from train.training.tasks.base import RecTask


class PopularityTask(RecTask):
    """Counts training interactions once, then only evaluates."""

    def __init__(self, model: MostPopular, evaluator, **_: object) -> None:
        super().__init__(model, evaluator)
        self.automatic_optimization = False

    def on_fit_start(self) -> None:
        counts = self.trainer.datamodule.data.item_popularity()
        self.model.fit(torch.as_tensor(counts, device=self.device))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # One pass is enough: stop the epoch straight away.
        self.trainer.should_stop = True
        return None

    def configure_optimizers(self) -> None:
        return None
