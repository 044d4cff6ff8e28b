"""Per-step knobs: data settings that follow the pacing schedule step by step.

Unlike the pool (fixed when an epoch starts), a knob may change before every batch: the
maximum sequence length, the BERT4Rec mask ratio, the negative-sampling mix. A knob's
value is a pure function of the schedule's *progress* ``p`` (0 at the start competence,
1 at full competence), so it needs no state of its own and every rank agrees on it.
Knobs change the data module only through its declared
:class:`~data_modules.curriculum_target.CurriculumTarget` settings, which act on the
objects that build batches in the main process; batches built ahead by DataLoader
workers would not see the change, hence the check in :func:`require_in_process_loading`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from data_modules.curriculum_target import CurriculumTarget
from recmodels.base import Recommender
from train.curriculum.examples import TrainExamples

Broadcast = Callable[[Any], Any]
BATCHES = "train_set"  # the knob target configs name: the data module's training batches


class Knob(ABC):
    """Base: ``attach`` once to the data module, then ``apply`` before every batch."""

    name = "knob"

    def attach(self, datamodule: CurriculumTarget, examples: TrainExamples | None) -> None:
        """Check that the data module has the setting this knob drives; raise if not."""

    @abstractmethod
    def apply(self, progress: float, step: int, model: Recommender | None, broadcast: Broadcast) -> dict[str, float]:
        """Set the value for ``progress``; returns what to log (name -> value)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def interpolate(start: float, end: float, progress: float) -> float:
    return start + (end - start) * min(1.0, max(0.0, progress))


def check_target(target: str) -> str:
    """Knobs drive the data module's training batches (``train_set``, as configs name them)
    through its declared settings; there is no other object to name."""
    if target != BATCHES:
        raise ValueError(
            f"a curriculum knob drives the data module's training batches ('{BATCHES}'), got target={target!r}; "
            "knobs act through data_modules.curriculum_target.CurriculumTarget only"
        )
    return target


class MaskRatio(Knob):
    """BERT4Rec mask ratio from ``start`` to ``end`` (e.g. 0.1 -> 0.2 masked items).

    Drives the data module's ``mask_ratio`` (the masked-objective batches of
    :class:`~data_modules.sequence_module.SequenceDataModule`).
    """

    name = "mask_prob"

    def __init__(self, start: float, end: float, target: str = BATCHES) -> None:
        for value in (start, end):
            if not 0.0 < value < 1.0:
                raise ValueError(f"mask ratios must lie in (0, 1), got start={start}, end={end}")
        self.start, self.end, self.target = float(start), float(end), check_target(target)
        self.datamodule: CurriculumTarget | None = None

    def attach(self, datamodule: CurriculumTarget, examples: TrainExamples | None) -> None:
        if datamodule.mask_ratio is None:
            raise ValueError(
                "the mask-ratio curriculum needs masked batches with a `mask_prob`; "
                f"{type(datamodule).__name__} has none (is the model BERT4Rec, objective=masked?)"
            )
        self.datamodule = datamodule

    def apply(self, progress: float, step: int, model: Recommender | None, broadcast: Broadcast) -> dict[str, float]:
        value = interpolate(self.start, self.end, progress)
        self.datamodule.mask_ratio = value
        return {"mask_prob": value}


class MaxLength(Knob):
    """Sequence-length curriculum: batches keep each window's most recent ``max_len`` items.

    ``max_len`` grows from ``start`` to ``end`` (default: the windows' width), rounded
    up to a multiple of ``multiple_of`` (e.g. 8 for tensor-core friendly shapes). The
    training set cuts windows before building inputs (so BERT4Rec masks only items that
    survive) and models use right-aligned positions, so a truncated history sees the
    same positions as a full one; shorter batches cost less attention compute.
    """

    name = "max_len"

    def __init__(self, start: int, end: int | None = None, multiple_of: int = 1, target: str = BATCHES) -> None:
        if start < 1 or (end is not None and end < start) or multiple_of < 1:
            raise ValueError(
                f"max_len schedule needs 1 <= start <= end and multiple_of >= 1; got {start}, {end}, {multiple_of}"
            )
        self.start, self.end, self.multiple_of = int(start), end, int(multiple_of)
        self.target = check_target(target)
        self.datamodule: CurriculumTarget | None = None

    def attach(self, datamodule: CurriculumTarget, examples: TrainExamples | None) -> None:
        if examples is None or examples.history is None:
            raise ValueError("the max_len curriculum needs sequence windows (SASRec/BERT4Rec data), not pairs")
        if datamodule.max_len is None:
            raise ValueError(
                "the max_len curriculum needs a data module that truncates batches to its `max_len`; "
                f"{type(datamodule).__name__} has none"
            )
        width = examples.history.shape[1]
        self.end = width if self.end is None else min(int(self.end), width)
        if self.start > self.end:
            raise ValueError(f"max_len start {self.start} exceeds the windows' width {self.end}")
        self.datamodule = datamodule

    def value(self, progress: float) -> int:
        raw = math.ceil(interpolate(self.start, float(self.end), progress) - 1e-9)
        return int(min(self.end, math.ceil(raw / self.multiple_of) * self.multiple_of))

    def apply(self, progress: float, step: int, model: Recommender | None, broadcast: Broadcast) -> dict[str, float]:
        value = self.value(progress)
        self.datamodule.max_len = value
        return {"max_len": float(value)}


def require_in_process_loading(loader: Any) -> None:
    """Per-step knobs act on the main process's objects: refuse DataLoader workers."""
    workers = getattr(loader, "num_workers", 0)
    if workers:
        raise ValueError(
            f"per-step curriculum knobs need the training DataLoader to build batches in the main "
            f"process, but it uses num_workers={workers}; set the data module's num_workers to 0"
        )
