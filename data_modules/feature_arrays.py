"""Encoded side features as plain numpy arrays: what the data layer hands to models.

The data layer knows nothing of torch or of models; the model side turns these arrays
into its own tensors and encoders (``recmodels.feature_tensors``). Codes and
statistics are fixed here, so both sides agree on what each value means.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FeatureArrays:
    """Encoded features of ``num_rows`` entities (items or users), row = internal id.

    - ``categorical[name]``: int64 [num_rows] (single-valued) or [num_rows, max_values]
      (multi-valued, padded with -1), codes in ``0..cardinality-1``, ``-1`` = none;
    - ``numeric``: float32 [num_rows, numeric_dim] (already standardised), or None;
    - ``vocabularies[name]``: the raw value of each code (for people, not for models);
    - ``numeric_names``: the source column of each numeric dimension.
    """

    num_rows: int
    categorical: dict[str, np.ndarray] = field(default_factory=dict)
    cardinalities: dict[str, int] = field(default_factory=dict)
    multi_valued: dict[str, bool] = field(default_factory=dict)
    numeric: np.ndarray | None = None
    numeric_names: list[str] = field(default_factory=list)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)

    @property
    def numeric_dim(self) -> int:
        return 0 if self.numeric is None else int(self.numeric.shape[1])

    @property
    def names(self) -> list[str]:
        """Source columns, categorical first (sorted), then numeric in order."""
        return sorted(self.categorical) + list(dict.fromkeys(self.numeric_names))

    def __bool__(self) -> bool:
        return bool(self.categorical) or self.numeric_dim > 0

    def describe(self) -> str:
        """One line for logs, e.g. ``genres(multi, 18) year(numeric)``."""
        parts = [
            f"{n}({'multi' if self.multi_valued[n] else 'categorical'}, {self.cardinalities[n]})"
            for n in sorted(self.categorical)
        ]
        numeric = list(dict.fromkeys(self.numeric_names))
        parts += [f"{n}(numeric, {self.numeric_names.count(n)})" for n in numeric]
        return " ".join(parts) or "(none)"
