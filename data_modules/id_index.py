"""Raw ids (as in the source files) <-> dense internal ids: the one lookup of the project.

An id map lists the raw id of every internal id (``user_ids[u]``). Preprocessing keeps
it sorted, but aligned maps (a continued run's) append new ids at the end, so lookups
never assume a sorted map. Unknown raw ids give ``-1``; callers decide whether that is
an error (evaluation, alignment) or an answer (serving).

Requests carry ids as JSON numbers or strings and files as text: :meth:`IdIndex.to_internal`
first coerces them to the dtype of the map, so ``"42"`` finds user ``42`` and ``7`` finds
item ``"7"``. :meth:`IdIndex.lookup` takes ids already of the map's type (data tables).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


class IdMapError(ValueError):
    """An id map is unusable (duplicated ids) or two maps cannot be aligned."""


def check_unique(ids: np.ndarray | pd.Index, what: str) -> None:
    """Refuse a map listing a raw id twice: that id would have two internal ids."""
    index = ids if isinstance(ids, pd.Index) else pd.Index(ids)
    if index.is_unique:
        return
    duplicated = index.duplicated()
    raise IdMapError(
        f"{what} lists {int(duplicated.sum())} raw id(s) twice (e.g. {index[duplicated][0]!r}); "
        "the id map is damaged: retrain the previous run or restore its artifacts/data folder"
    )


class IdIndex:
    """Two-way map between raw ids and ``0..n-1``; ``kind`` names it in messages."""

    def __init__(self, raw_ids: np.ndarray, kind: str) -> None:
        self.raw_ids = np.asarray(raw_ids)
        self.kind = kind
        self.numeric = np.issubdtype(self.raw_ids.dtype, np.number)
        self._index = pd.Index(self.raw_ids)  # hash table built once, reused by every lookup
        check_unique(self._index, f"{kind} id map")

    def __len__(self) -> int:
        return len(self.raw_ids)

    def lookup(self, raw: np.ndarray) -> np.ndarray:
        """Internal ids of raw ids of the map's type (any shape), ``-1`` for ids not in the map."""
        raw = np.asarray(raw)
        if len(self.raw_ids) == 0 or raw.size == 0:
            return np.full(raw.shape, -1, dtype=np.int64)
        return self._index.get_indexer(pd.Index(raw.ravel())).astype(np.int64).reshape(raw.shape)

    def coerce(self, values: Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(values in the id map's dtype, mask of values that could be converted)."""
        series = pd.Series(list(values), dtype=object)
        if not self.numeric:
            return series.astype(str).to_numpy(dtype=object), np.ones(len(series), dtype=bool)
        if np.issubdtype(self.raw_ids.dtype, np.integer):
            return _as_integers(series)
        numbers = pd.to_numeric(series.astype(str), errors="coerce").to_numpy(dtype=np.float64)
        ok = np.isfinite(numbers)
        return np.where(ok, numbers, 0).astype(self.raw_ids.dtype), ok

    def to_internal(self, values: Iterable[Any]) -> np.ndarray:
        """Internal ids of request/file values, ``-1`` for raw ids that are not in the map."""
        raw, ok = self.coerce(values)
        return np.where(ok, self.lookup(raw), -1).astype(np.int64)

    def to_raw(self, internal: np.ndarray) -> np.ndarray:
        return self.raw_ids[np.asarray(internal, dtype=np.int64)]


def _as_integers(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Exact int64 parsing of ints, integer strings and integral floats (no float64
    round trip, so ids above 2**53 survive); anything else is not convertible."""
    text = series.astype(str).str.strip()
    digits = text.str.fullmatch(r"[+-]?\d{1,18}").to_numpy(dtype=bool)
    out = np.zeros(len(text), dtype=np.int64)
    out[digits] = text[digits].astype(np.int64).to_numpy()
    ok = digits.copy()
    rest = np.flatnonzero(~digits)
    numbers = pd.to_numeric(text.iloc[rest], errors="coerce").to_numpy(dtype=np.float64)
    integral = np.isfinite(numbers) & (np.mod(np.nan_to_num(numbers), 1) == 0) & (np.abs(numbers) < 2**53)
    out[rest[integral]] = numbers[integral].astype(np.int64)
    ok[rest[integral]] = True
    long = np.flatnonzero(text.str.fullmatch(r"[+-]?\d{19}").to_numpy(dtype=bool))
    for index in long:  # the rare 19-digit ids, checked against the int64 range
        value = int(text.iloc[index])
        if -(2**63) <= value < 2**63:
            out[index], ok[index] = value, True
    return out, ok
