"""Side features as plain tensors: the only form in which models ever see them.

Models know nothing of tables or files. The data layer
(:mod:`data_modules.features`) turns item/user feature tables into a
:class:`FeatureTensors` (one row per internal id) and models turn that into an
:class:`~recmodels.item_encoder.ItemEncoder` with :meth:`FeatureTensors.encoder`. The
same encoder works for users: it only needs "row id -> fixed feature values".
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from recmodels.item_encoder import ItemEncoder


@dataclass
class FeatureTensors:
    """Encoded features of ``num_rows`` entities (items or users), row = internal id.

    - ``categorical[name]``: LongTensor [num_rows] (single-valued) or
      [num_rows, max_values] (multi-valued), values in ``0..cardinality-1``, ``-1`` = none;
    - ``numeric``: FloatTensor [num_rows, numeric_dim] (already standardised), or None;
    - ``vocabularies[name]``: the raw value of each code (for people, not for models);
    - ``numeric_names``: the source column of each numeric dimension.
    """

    num_rows: int
    categorical: dict[str, Tensor] = field(default_factory=dict)
    cardinalities: dict[str, int] = field(default_factory=dict)
    multi_valued: dict[str, bool] = field(default_factory=dict)
    numeric: Tensor | None = None
    numeric_names: list[str] = field(default_factory=list)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)

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
        if self.numeric is not None:
            if self.numeric.dim() != 2 or self.numeric.shape[0] != self.num_rows:
                raise ValueError(
                    f"numeric features must be [num_rows={self.num_rows}, dim]; "
                    f"got {tuple(self.numeric.shape)}"
                )
            if len(self.numeric_names) != self.numeric.shape[1]:
                raise ValueError(
                    f"numeric_names has {len(self.numeric_names)} entries for "
                    f"{self.numeric.shape[1]} numeric dimensions"
                )

    @property
    def numeric_dim(self) -> int:
        return 0 if self.numeric is None else int(self.numeric.shape[1])

    @property
    def names(self) -> list[str]:
        """Source columns, categorical first (sorted), then numeric in order."""
        return sorted(self.categorical) + list(dict.fromkeys(self.numeric_names))

    def __bool__(self) -> bool:
        return bool(self.categorical) or self.numeric_dim > 0

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

    def describe(self) -> str:
        """One line for logs, e.g. ``genres(multi, 18) year(numeric)``."""
        parts = [
            f"{n}({'multi' if self.multi_valued[n] else 'categorical'}, {self.cardinalities[n]})"
            for n in sorted(self.categorical)
        ]
        numeric = list(dict.fromkeys(self.numeric_names))
        parts += [f"{n}(numeric, {self.numeric_names.count(n)})" for n in numeric]
        return " ".join(parts) or "(none)"


def id_only(num_rows: int) -> FeatureTensors:
    """No side features: an encoder built from this is a plain id embedding."""
    return FeatureTensors(num_rows=num_rows)
