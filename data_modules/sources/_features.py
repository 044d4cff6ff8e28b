"""Side-feature tables: a tab-separated file with a header and one row per id.

Multi-valued columns (``genres``) become lists; columns whose every non-empty value is
a number become numeric (integers as nullable ``Int64``), except code-like columns
(``zip``) that must keep their leading zeros.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from data_modules.preprocessing import DataFormatError
from data_modules.sources._reading import decode, read_delimited, require_file, strip_bom

TEXT_COLUMNS = ("zip", "title")
_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)\s*$")


def read_feature_table(
    path: str | os.PathLike,
    key: str,
    *,
    key_dtype: str = "int",
    list_columns: Iterable[str] = ("genres",),
    list_sep: str = "|",
    text_columns: Iterable[str] = TEXT_COLUMNS,
    sep: str = "\t",
    max_bad_fraction: float = 0.01,
) -> tuple[pd.DataFrame, dict]:
    """Features indexed by raw id ``key`` plus the read report."""
    path = require_file(path, "the feature file: fix its path or set it to null")
    header = _header(path, sep)
    if key not in header:
        raise DataFormatError(
            f"{path}: no {key!r} column in the header {header}; the first line must name the "
            f"columns and one of them must be {key!r}"
        )
    dtypes = {c: ("str" if c != key else key_dtype) for c in header}
    frame, report = read_delimited(
        path, sep=sep, dtypes=dtypes, names=header, header=True, max_bad_fraction=max_bad_fraction
    )
    repeated = frame[key].duplicated().to_numpy()
    if repeated.any():
        raise DataFormatError(
            f"{path}: {key} {frame[key].iloc[int(np.flatnonzero(repeated)[0])]!r} has more than one "
            "line; each id needs exactly one row of features (remove the duplicates)"
        )
    frame = frame.set_index(key)
    lists, texts = set(list_columns), set(text_columns)
    for column in frame.columns:
        if column in lists:
            frame[column] = split_lists(frame[column], list_sep)
        elif column not in texts:
            frame[column] = maybe_numeric(frame[column])
    return frame, report


def _header(path: Path, sep: str) -> list[str]:
    """Column names of the first line (byte-order mark removed, bad bytes named)."""
    with open(path, "rb") as handle:
        first = strip_bom(handle.readline())
    return decode(first, path).rstrip("\r\n").split(sep)


def optional_feature_table(
    path: str | os.PathLike | None,
    key: str,
    report: dict,
    *,
    key_dtype: str = "int",
    max_bad_fraction: float = 0.01,
) -> pd.DataFrame | None:
    """The table at ``path`` (its read report stored as ``report[f"{key}_file"]``); None
    when the source was given no such file."""
    if not path:
        return None
    frame, report[f"{key}_file"] = read_feature_table(
        path, key, key_dtype=key_dtype, max_bad_fraction=max_bad_fraction
    )
    return frame


def split_lists(values: pd.Series, sep: str) -> pd.Series:
    """'a|b' -> ['a', 'b']; empty or '(no genres listed)' -> []."""
    parts = values.fillna("").astype(str).str.split(sep, regex=False)
    cleaned = [[p for p in row if p and p != "(no genres listed)"] for row in parts]
    return pd.Series(cleaned, index=values.index, dtype=object)


def maybe_numeric(values: pd.Series) -> pd.Series:
    """Numeric when every non-empty value parses; integral columns as nullable Int64."""
    text = values.astype(str).str.strip()
    empty = (text == "") | values.isna()
    numbers = pd.to_numeric(text.where(~empty), errors="coerce")
    if numbers[~empty].isna().any() or empty.all():
        return values
    finite = numbers.dropna().to_numpy()
    if np.all(np.mod(finite, 1) == 0):
        return numbers.astype("Int64")
    return numbers.astype("float64")


def split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); no year -> (title, <NA>)."""
    parts = titles.astype(str).str.extract(_YEAR)
    has = parts["year"].notna()
    title = parts["title"].where(has, titles.astype(str).str.strip())
    year = pd.to_numeric(parts["year"], errors="coerce").astype("Int64")
    return title, year
