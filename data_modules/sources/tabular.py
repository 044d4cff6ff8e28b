"""Any CSV/TSV/Parquet table of interactions, with columns named by the user.

``columns`` maps the roles ``user``, ``item``, ``timestamp`` and ``rating`` to the
file's column names (``timestamp``/``rating`` may be ``null``: file order then serves
as time, and there are no ratings). Ids stay integers when every id is a plain integer,
otherwise they are kept as strings. Timestamps may be numbers or date strings.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Unpack

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from data_modules.interactions import InteractionData
from data_modules.preprocessing import DataFormatError
from data_modules.sources._common import Loader, SourceOptions
from data_modules.sources._features import optional_feature_table
from data_modules.sources._reading import MAX_EXAMPLES, read_delimited, require_file

log = logging.getLogger(__name__)

ROLES = ("user", "item", "timestamp", "rating")
DEFAULT_COLUMNS = {"user": "user", "item": "item", "timestamp": "timestamp", "rating": None}
PARQUET_SUFFIXES = (".parquet", ".pq")


def tabular(
    path: str | os.PathLike,
    format: str = "auto",
    columns: Mapping[str, str | None] | None = None,
    sep: str | None = None,
    header: bool = True,
    names: list[str] | None = None,
    item_features_path: str | os.PathLike | None = None,
    user_features_path: str | os.PathLike | None = None,
    name: str | None = None,
    **options: Unpack[SourceOptions],
) -> InteractionData:
    """Load a generic table. ``sep`` defaults to tab for ``.tsv`` files, else comma;
    ``names`` names the columns of a file without a header line (``header: false``)."""
    path = require_file(path, "set data.path to a CSV/TSV/Parquet file of interactions")
    fmt = _format(path, format)
    roles = _roles(columns)
    sep = sep or ("\t" if path.suffix.lower() == ".tsv" else ",")
    load = Loader.of(name or path.stem, options)
    feature_paths = [Path(p) for p in (item_features_path, user_features_path) if p]

    def build() -> InteractionData:
        if fmt == "parquet":
            raw, report = _read_parquet(path, roles)
        else:
            raw, report = _read_csv(path, roles, sep, header, names, load.max_bad_fraction, load.progress)
        raw = _convert(raw, path, load.max_bad_fraction, report)
        # Feature files are keyed like the interactions: integer ids stay integers.
        items, users = (
            optional_feature_table(
                file, key, report, key_dtype="int" if pd.api.types.is_integer_dtype(raw[key]) else "str"
            )
            for file, key in ((item_features_path, "item"), (user_features_path, "user"))
        )
        return load.preprocess(raw, report, items, users)

    settings: dict[str, Any] = {
        "format": fmt, "columns": roles, "sep": sep, "header": header, "names": names,
        "max_bad_fraction": load.max_bad_fraction,
    }
    return load.cached(
        build, source="tabular", settings=settings, files=[path, *feature_paths], data_root=path.parent
    )


def _format(path: Path, format: str) -> str:
    if format == "auto":
        return "parquet" if path.suffix.lower() in PARQUET_SUFFIXES else "csv"
    if format not in ("csv", "parquet"):
        raise ValueError(f"tabular format={format!r} is unknown; use auto, csv or parquet")
    return format


def _roles(columns: Mapping[str, str | None] | None) -> dict[str, str | None]:
    roles = dict(DEFAULT_COLUMNS)
    unknown = sorted(set(columns or {}) - set(ROLES))
    if unknown:
        raise ValueError(f"tabular columns has unknown role(s) {unknown}; roles are {list(ROLES)}")
    roles.update(columns or {})
    for role in ("user", "item"):
        if not roles[role]:
            raise ValueError(f"tabular columns.{role} must name a column")
    return roles


def _read_csv(
    path: Path, roles: dict, sep: str, header: bool, names: list[str] | None, max_bad: float, progress
) -> tuple[pd.DataFrame, dict]:
    if not header and names is None:
        raise ValueError(f"{path}: header=false needs `names` (the file's column names in order)")
    kinds = {"user": "str", "item": "str", "timestamp": "str", "rating": "float"}
    dtypes = {roles[r]: kinds[r] for r in ROLES if roles[r]}
    try:
        frame, report = read_delimited(
            path, sep=sep, dtypes=dtypes, names=names, header=header, quotechar='"',
            max_bad_fraction=max_bad, progress=progress,
        )
    except DataFormatError as exc:
        if "not found" in str(exc):
            raise DataFormatError(f"{exc}; map the roles to its columns with data.columns") from None
        raise
    return frame.rename(columns={roles[r]: r for r in ROLES if roles[r]}), report


def _read_parquet(path: Path, roles: dict) -> tuple[pd.DataFrame, dict]:
    available = pq.read_schema(path).names
    wanted = {roles[r]: r for r in ROLES if roles[r]}
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataFormatError(
            f"{path}: column(s) {missing} not found; the file has {available}; "
            "map the roles to its columns with data.columns"
        )
    frame = pd.read_parquet(path, columns=list(wanted)).rename(columns=wanted)
    return frame, {"lines": len(frame), "skipped_lines": 0}


def _convert(raw: pd.DataFrame, path: Path, max_bad: float, report: dict) -> pd.DataFrame:
    """Typed ids and timestamps; unparsable rows are skipped and counted (or an error)."""
    out = pd.DataFrame(index=raw.index)
    bad = np.zeros(len(raw), dtype=bool)
    reasons: dict[str, int] = {}
    for role in ("user", "item"):
        out[role], invalid = _ids(raw[role])
        reasons[f"missing_{role}"] = int(invalid.sum())
        bad |= invalid
    if "timestamp" in raw.columns:
        out["timestamp"], invalid = _timestamps(raw["timestamp"])
        reasons["bad_timestamp"] = int(invalid.sum())
        bad |= invalid
    if "rating" in raw.columns:
        rating = pd.to_numeric(raw["rating"], errors="coerce")
        reasons["bad_rating"] = int(rating.isna().sum())
        bad |= rating.isna().to_numpy()
        out["rating"] = rating
    reasons = {k: v for k, v in reasons.items() if v}
    if not bad.any():
        return out
    examples = [f"row {i + 1}: {raw.iloc[i].to_dict()}" for i in np.flatnonzero(bad)[:MAX_EXAMPLES]]
    if bad.sum() > max_bad * len(raw):
        raise DataFormatError(
            f"{path}: {int(bad.sum())} of {len(raw)} rows have missing or unparsable values "
            f"{reasons} (more than max_bad_fraction={max_bad}). First ones:\n  "
            + "\n  ".join(examples)
            + "\nCheck data.columns (is the right column mapped to each role?) or clean the file."
        )
    report["skipped_rows"] = {"count": int(bad.sum()), **reasons, "examples": examples}
    log.warning("%s: skipped %d row(s) with missing/unparsable values %s", path, int(bad.sum()), reasons)
    return out[~bad].reset_index(drop=True)


def _ids(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Integer ids when all are plain integers (no leading zeros), else strings."""
    missing = values.isna().to_numpy().copy()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        missing |= (values.astype(str).str.strip() == "").to_numpy()
    if pd.api.types.is_integer_dtype(values) and not missing.any():
        return values.astype(np.int64), missing
    if pd.api.types.is_float_dtype(values):
        whole = np.all(np.mod(values.dropna(), 1) == 0)
        if whole:
            return values.fillna(-1).astype(np.int64), missing
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text.where(~missing), errors="coerce")
    if not numbers[~missing].isna().any():
        as_int = numbers.fillna(-1).astype(np.int64)
        if (as_int.astype(str)[~missing] == text[~missing]).all():
            return as_int, missing
    return text.where(~missing, ""), missing


def _timestamps(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Numbers stay numbers; otherwise dates (converted to UTC, zone dropped)."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.notna().sum() >= values.notna().sum() * 0.5:  # mostly numeric: a few bad
            return numbers.fillna(0), numbers.isna().to_numpy()
        values = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.fillna(pd.Timestamp(0)), values.isna().to_numpy()
