"""Most-popular baseline: fitted from training counts, nothing to optimise."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from recmodels.pop import MostPopular
from train.evaluation import Evaluator
from train.training.tasks.base import RecTask


class PopularityTask(RecTask):
    """Counts training interactions once, then only evaluates.

    ``item_popularity`` (training interactions per item) is given at construction, as
    :func:`train.building.build_with_data` does from the data.
    """

    def __init__(
        self, model: MostPopular, evaluator: Evaluator, item_popularity: np.ndarray | None = None, **_: object
    ) -> None:
        super().__init__(model, evaluator)
        self.item_popularity = item_popularity
        self.automatic_optimization = False

    def on_fit_start(self) -> None:
        if self.item_popularity is None:
            raise ValueError(
                "PopularityTask needs item_popularity (training counts per item); "
                "build it with train.building.build_with_data"
            )
        self.model.fit(torch.as_tensor(self.item_popularity, device=self.device))

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # One pass is enough: stop the epoch straight away.
        self.trainer.should_stop = True
        return None

    def configure_optimizers(self) -> None:
        return None
