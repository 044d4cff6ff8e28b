"""Side features as plain tensors: the only form in which models ever see them.

Models know nothing of tables or files. The data layer encodes item/user feature
tables into numpy arrays (one row per internal id); :meth:`FeatureTensors.from_arrays`
turns those into tensors and models turn a :class:`FeatureTensors` into an
:class:`~recmodels.item_encoder.ItemEncoder` with :meth:`FeatureTensors.encoder`. The
same encoder works for users: it only needs "row id -> fixed feature values".
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from recmodels.item_encoder import ItemEncoder


@dataclass
class FeatureTensors:
    """Encoded features of ``num_rows`` entities (items or users), row = internal id.

    - ``categorical[name]``: LongTensor [num_rows] (single-valued) or
      [num_rows, max_values] (multi-valued), values in ``0..cardinality-1``, ``-1`` = none;
    - ``numeric``: FloatTensor [num_rows, numeric_dim] (already standardised), or None.
    """

    num_rows: int
    categorical: dict[str, Tensor] = field(default_factory=dict)
    cardinalities: dict[str, int] = field(default_factory=dict)
    multi_valued: dict[str, bool] = field(default_factory=dict)
    numeric: Tensor | None = None

    def __post_init__(self) -> None:
        names = set(self.categorical)
        if names != set(self.cardinalities) or names != set(self.multi_valued):
            raise ValueError(
                "categorical, cardinalities and multi_valued must name the same features; got "
                f"{sorted(self.categorical)}, {sorted(self.cardinalities)}, {sorted(self.multi_valued)}"
            )
        for name, values in self.categorical.items():
            if values.shape[0] != self.num_rows:
                raise ValueError(f"feature {name!r} has {values.shape[0]} rows, expected {self.num_rows}")
        if self.numeric is not None and (self.numeric.dim() != 2 or self.numeric.shape[0] != self.num_rows):
            raise ValueError(
                f"numeric features must be [num_rows={self.num_rows}, dim]; got {tuple(self.numeric.shape)}"
            )

    @classmethod
    def from_arrays(
        cls,
        num_rows: int,
        categorical: Mapping[str, np.ndarray],
        cardinalities: Mapping[str, int],
        multi_valued: Mapping[str, bool],
        numeric: np.ndarray | None = None,
    ) -> FeatureTensors:
        """Tensors of encoded numpy arrays (shared memory, no copy): codes as int64,
        numeric values as float32."""
        codes = {name: torch.from_numpy(np.asarray(v, dtype=np.int64)) for name, v in categorical.items()}
        return cls(
            num_rows=num_rows,
            categorical=codes,
            cardinalities=dict(cardinalities),
            multi_valued=dict(multi_valued),
            numeric=None if numeric is None else torch.from_numpy(np.asarray(numeric, dtype=np.float32)),
        )

    @property
    def numeric_dim(self) -> int:
        return 0 if self.numeric is None else int(self.numeric.shape[1])

    def encoder(self, dim: int, fusion: str = "sum") -> ItemEncoder:
        """An :class:`ItemEncoder` (id embedding + these features) with vectors of size ``dim``."""
        return ItemEncoder(
            self.num_rows,
            dim,
            {n: (self.cardinalities[n], self.multi_valued[n]) for n in self.categorical},
            numeric_dim=self.numeric_dim,
            fusion=fusion,
            categorical_values=self.categorical,
            numeric_values=self.numeric,
        )


def id_only(num_rows: int) -> FeatureTensors:
    """No side features: an encoder built from this is a plain id embedding."""
    return FeatureTensors(num_rows=num_rows)
