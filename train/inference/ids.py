"""Raw ids (as in the source files) <-> dense internal ids, for requests and outputs.

Requests carry ids as JSON numbers or strings and files as text; both are coerced to
the dtype of the stored id map before lookup, so ``"42"`` finds user ``42`` and ``7``
finds item ``"7"``. Lookups are vectorised (sorted search), unknown ids give ``-1``.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


class IdIndex:
    """Two-way map between raw ids and ``0..n-1``; ``kind`` names it in messages."""

    def __init__(self, raw_ids: np.ndarray, kind: str) -> None:
        self.raw_ids = np.asarray(raw_ids)
        self.kind = kind
        self.numeric = np.issubdtype(self.raw_ids.dtype, np.number)
        self._order = np.argsort(self.raw_ids, kind="stable")
        self._sorted = self.raw_ids[self._order]

    def __len__(self) -> int:
        return len(self.raw_ids)

    def coerce(self, values: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(values in the id map's dtype, mask of values that could be converted)."""
        series = pd.Series(list(values), dtype=object)
        if self.numeric:
            numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            ok = np.isfinite(numbers)
            if np.issubdtype(self.raw_ids.dtype, np.integer):
                ok &= np.mod(np.where(ok, numbers, 0), 1) == 0
            filled = np.where(ok, numbers, 0).astype(self.raw_ids.dtype)
            return filled, ok
        return series.astype(str).to_numpy(dtype=object), np.ones(len(series), dtype=bool)

    def to_internal(self, values: Iterable[Any]) -> np.ndarray:
        """Internal ids, ``-1`` for raw ids that are not in the map."""
        raw, ok = self.coerce(values)
        if len(self._sorted) == 0 or len(raw) == 0:
            return np.full(len(raw), -1, dtype=np.int64)
        pos = np.searchsorted(self._sorted, raw)
        pos = np.minimum(pos, len(self._sorted) - 1)
        found = ok & (self._sorted[pos] == raw)
        return np.where(found, self._order[pos], -1).astype(np.int64)

    def to_raw(self, internal: np.ndarray) -> np.ndarray:
        return self.raw_ids[np.asarray(internal, dtype=np.int64)]

    def unknown(self, values: list[Any]) -> list[Any]:
        """The given values that are not known ids (as given, in order)."""
        missing = self.to_internal(values) < 0
        return np.asarray(values, dtype=object)[missing].tolist()
