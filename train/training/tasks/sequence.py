"""Sequence objective: next-item (SASRec) or masked-item (BERT4Rec) prediction.

The loss is chosen by config (``bce``, ``ce``, ``sampled_softmax``, ``gbce``; see
recmodels/losses.py) and applied at every position that has a target. Losses with
popularity-based proposals get the training counts given at construction
(``item_popularity``, passed by :func:`train.building.build_with_data`).
"""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor

from recmodels.base import Recommender
from recmodels.losses import LOSSES, loss_options, make_loss, sequence_loss
from train.evaluation import Evaluator
from train.training.tasks.base import OptimizerFactory, RecTask, SchedulerFactory


class SequenceTask(RecTask):
    """Trains a SASRec/BERT4Rec-style model on batches of ``history`` and ``targets``."""

    def __init__(
        self,
        model: Recommender,
        evaluator: Evaluator,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "epoch",
        lr_scaling: dict[str, Any] | None = None,
        loss: dict[str, Any] | None = None,
        item_popularity: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, evaluator, optimizer, scheduler, scheduler_interval, lr_scaling)
        self.loss_config = dict(loss or {"name": "ce"})
        name = self.loss_config.get("name")
        if name not in LOSSES:
            raise ValueError(f"model.task.loss.name={name!r} is unknown; choose one of {sorted(LOSSES)}")
        self.item_popularity = item_popularity
        self.seed = int(seed)
        self.loss_fn: torch.nn.Module | None = None

    def setup(self, stage: str) -> None:
        if self.loss_fn is not None:
            return
        options = loss_options(self.loss_config)
        name = self.loss_config["name"]
        if "item_counts" in inspect.signature(LOSSES[name]).parameters and self.item_popularity is not None:
            options.setdefault("item_counts", self.item_popularity)
        self.loss_fn = make_loss(name, self.model.num_items, **options)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        if self.loss_fn is None:
            self.setup("fit")
        step = self.trainer.global_step if self._trainer else 0
        self.loss_fn.generator = step_generator(self.device, self.seed, step, self.global_rank)
        return sequence_loss(self.model, batch, self.loss_fn)


def step_generator(device: torch.device, seed: int, step: int, rank: int) -> torch.Generator:
    """The random stream of one training step's negatives.

    A function of (run seed, step, rank) alone, so a resumed run replays exactly the
    negatives of an uninterrupted one, ranks draw different ones, and runs with
    different ``seed`` draw different ones. SeedSequence mixes the three numbers, so
    nearby triples give unrelated streams.
    """
    state = np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))
