"""What a curriculum may read and change on a data module, declared in one place.

A curriculum serves easier data first by changing *data* settings only: which training
examples an epoch may draw (the pool), the negative sampler, the training windows'
maximum length and the cloze mask ratio. The data modules implement this interface
(:class:`~data_modules.base.RecDataModule` and its subclasses); the curriculum calls
nothing else, so a new data module supports every curriculum it can by implementing it.
Settings a data module does not have read as ``None`` and refuse to be set.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from data_modules.interactions import InteractionData
from data_modules.negatives import DrawsNegatives

# Called once per epoch when the training loader is built: the example indices that
# epoch may draw, or None for all of them.
PoolSource = Callable[[], np.ndarray | None]


@runtime_checkable
class CurriculumTarget(Protocol):
    """The curriculum's view of a data module."""

    data: InteractionData
    batch_size: int
    train_set: Any  # read only: its arrays describe the examples to score

    def num_train_examples(self) -> int:
        """Examples one full training epoch draws from (indices ``0..N-1``)."""

    def set_train_pool(self, pool: PoolSource | None) -> None:
        """Ask ``pool`` for the allowed examples whenever an epoch's sampler is built."""

    @property
    def negative_sampler(self) -> DrawsNegatives | None:
        """What draws the training negatives in the data pipeline (None: nothing does)."""

    @negative_sampler.setter
    def negative_sampler(self, sampler: DrawsNegatives) -> None: ...

    @property
    def max_len(self) -> int | None:
        """Most recent items a training window keeps (None: no windows)."""

    @max_len.setter
    def max_len(self, value: int) -> None: ...

    @property
    def mask_ratio(self) -> float | None:
        """Share of items the cloze objective masks (None: no masked objective)."""

    @mask_ratio.setter
    def mask_ratio(self, value: float) -> None: ...
