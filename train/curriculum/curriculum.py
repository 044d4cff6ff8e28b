"""A curriculum without Lightning: pacing + pool difficulty + per-step knobs + state.

The Lightning callback only forwards the trainer's global step, epoch, model and
broadcast to this object, so the whole schedule can be tested and replayed by hand.
Everything here is a deterministic function of (config, data, global step, and for
model-based parts the weights at that step); model-based results are broadcast from rank
0 so that ranks cannot drift apart through non-deterministic kernels.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from data_modules.batching import EpochBatchSampler
from data_modules.curriculum_target import CurriculumTarget
from recmodels.base import Recommender
from train.curriculum.difficulty import Difficulty
from train.curriculum.examples import TrainExamples, describe_examples
from train.curriculum.knobs import Knob
from train.curriculum.pacing import make_pacing
from train.curriculum.pool import allowed_pool, easiest_order
from train.curriculum.scheduler import CurriculumScheduler

Broadcast = Callable[[Any], Any]


def _identity(obj: Any) -> Any:
    return obj


def full_epoch_steps(datamodule: CurriculumTarget, world_size: int = 1, accumulate: int = 1) -> int:
    """Optimiser steps of one pass over *all* training data on one rank (ramp_epochs unit)."""
    sampler = EpochBatchSampler(datamodule.num_train_examples(), datamodule.batch_size, world_size=world_size)
    return max(1, math.ceil(len(sampler) / max(1, accumulate)))


def check_target(datamodule: Any) -> CurriculumTarget:
    """The data module, if it declares what a curriculum may change; a clear error if not."""
    if not isinstance(datamodule, CurriculumTarget):
        raise ValueError(
            f"{type(datamodule).__name__} does not implement data_modules.curriculum_target.CurriculumTarget; "
            "derive it from data_modules.base.RecDataModule and build its sampler with make_train_sampler()"
        )
    return datamodule


class Curriculum:
    """Owns the scheduler, the pool order and the knobs of one training run."""

    def __init__(
        self,
        pacing: Mapping[str, Any],
        difficulty: Difficulty | None = None,
        knobs: Mapping[str, Knob | None] | Sequence[Knob] | None = None,
    ) -> None:
        self.pacing_config = dict(pacing)
        self.difficulty = difficulty
        values = knobs.values() if isinstance(knobs, Mapping) else (knobs or ())
        self.knobs: list[Knob] = [knob for knob in values if knob is not None]
        if difficulty is None and not self.knobs:
            raise ValueError(
                "a curriculum needs a difficulty (pool) or at least one knob; use curriculum=none for neither"
            )
        self.scheduler: CurriculumScheduler | None = None
        self.examples: TrainExamples | None = None
        self.order: np.ndarray | None = None
        self.scores: np.ndarray | None = None
        self.scores_epoch: int | None = None
        self.world_size = 1
        self.active_fraction = 1.0
        self.pool_calls = 0
        self._pending: dict[str, Any] | None = None

    # -- wiring -----------------------------------------------------------------------
    def bind(self, datamodule: CurriculumTarget, world_size: int = 1, accumulate: int = 1) -> None:
        """Build the schedule for this data and attach the knobs (before the first epoch)."""
        datamodule = check_target(datamodule)
        needs_epochs = self.pacing_config.get("ramp_epochs") is not None
        steps = full_epoch_steps(datamodule, world_size, accumulate) if needs_epochs else None
        self.scheduler = CurriculumScheduler(make_pacing(**self.pacing_config, steps_per_epoch=steps))
        self.world_size = world_size
        data = datamodule.data
        self.examples = describe_examples(datamodule.train_set, data.num_items, data.item_popularity())
        if self.difficulty is not None and not self.difficulty.dynamic:
            self.order = easiest_order(self.difficulty.score(self.examples))
        for knob in self.knobs:
            knob.attach(datamodule, self.examples)
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.load_state_dict(state)

    # -- per epoch: the pool ------------------------------------------------------------
    def epoch_pool(
        self, global_step: int, epoch: int, model: Recommender | None = None, broadcast: Broadcast = _identity
    ) -> np.ndarray | None:
        """Indices the epoch starting at ``global_step`` may draw; None = all of them."""
        self.pool_calls += 1
        competence = self.scheduler.advance(global_step)
        if self.difficulty is None or competence >= 1.0:
            self.active_fraction = 1.0
            return None
        if self.difficulty.dynamic and self._refresh_due(epoch):
            scores = self.difficulty.score(self.examples, model)
            self.scores = np.asarray(broadcast(scores), dtype=np.float64)
            self.scores_epoch = epoch
            self.order = easiest_order(self.scores)
        pool = allowed_pool(self.order, competence, minimum=self.world_size)
        self.active_fraction = len(pool) / len(self.examples)
        return pool

    def _refresh_due(self, epoch: int) -> bool:
        every = getattr(self.difficulty, "refresh_epochs", 1)
        return self.scores is None or self.scores_epoch is None or epoch - self.scores_epoch >= every

    # -- per step: the knobs ------------------------------------------------------------
    def step(
        self, global_step: int, model: Recommender | None = None, broadcast: Broadcast = _identity
    ) -> dict[str, float]:
        """Move to ``global_step`` and set every knob; returns the values to log."""
        competence = self.scheduler.advance(global_step)
        values = {"competence": competence, "active_fraction": self.active_fraction}
        for knob in self.knobs:
            values.update(knob.apply(self.scheduler.progress, global_step, model, broadcast))
        return values

    # -- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.scheduler is None:
            return dict(self._pending or {})
        return {
            "scheduler": self.scheduler.state_dict(),
            "scores": None if self.scores is None else torch.from_numpy(self.scores.copy()),
            "scores_epoch": self.scores_epoch,
            "knobs": {f"{i}:{knob.name}": knob.state_dict() for i, knob in enumerate(self.knobs)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint's schedule; kept until :meth:`bind` if called before it."""
        if self.scheduler is None:
            self._pending = state
            return
        self.scheduler.load_state_dict(state["scheduler"])
        scores = state.get("scores")
        self.scores = None if scores is None else scores.cpu().numpy().astype(np.float64)
        self.scores_epoch = state.get("scores_epoch")
        if self.scores is not None:
            self.order = easiest_order(self.scores)
        saved = state.get("knobs", {})
        for i, knob in enumerate(self.knobs):
            key = f"{i}:{knob.name}"
            if key not in saved:
                raise ValueError(
                    f"checkpoint has no state for curriculum knob {key}; resume with the same curriculum config"
                )
            knob.load_state_dict(saved[key])
