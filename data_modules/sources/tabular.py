"""Any CSV/TSV/Parquet table of interactions, with columns named by the user.

``columns`` maps the roles ``user``, ``item``, ``timestamp`` and ``rating`` to the
file's column names (``timestamp``/``rating`` may be ``null``: file order then serves
as time, and there are no ratings). A file without the default ``timestamp`` column is
read in file order too, with a logged notice: many click logs are written in time order
and have no time column; a column named explicitly must exist. Ids stay integers when
every id is a plain int64 integer, otherwise they are kept as strings; in a column of
mostly numbers, a few non-numbers are malformed rows (skipped and counted). Timestamps
may be numbers or date strings.
"""
from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Unpack

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_modules.interactions import InteractionData
from data_modules.preprocessing import DataFormatError
from data_modules.sources._common import Loader, SourceOptions, expands_paths
from data_modules.sources._features import optional_feature_table
from data_modules.sources._reading import INT64_MAX, MAX_EXAMPLES, parse_int64, read_delimited, require_file

log = logging.getLogger(__name__)

ROLES = ("user", "item", "timestamp", "rating")
DEFAULT_COLUMNS = {"user": "user", "item": "item", "timestamp": "timestamp", "rating": None}
PARQUET_SUFFIXES = (".parquet", ".pq")
FLOAT_EXACT = 2**53  # larger floats no longer hold every integer


@expands_paths
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
    sep = sep or ("\t" if path.suffix.lower() == ".tsv" else ",")
    roles = _time_from_file_order(_roles(columns), _columns_of(path, fmt, sep, header, names), path)
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


def _columns_of(path: Path, fmt: str, sep: str, header: bool, names: list[str] | None) -> list[str]:
    """The file's column names (Parquet schema, header line or ``names``), read cheaply."""
    if fmt == "parquet":
        return _parquet_schema(path)
    if not header:
        return list(names or [])
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        line = handle.readline().rstrip("\r\n")
    if len(sep) > 1:
        return line.split(sep)
    return next(csv.reader([line], delimiter=sep, quotechar='"'), [])


def _time_from_file_order(
    roles: dict[str, str | None], available: list[str], path: Path
) -> dict[str, str | None]:
    """Without the default ``timestamp`` column, file order is the time order (logged).

    Only the default name falls back: a column the user named must exist, and a file
    missing the user or item column too is left to the reader's error, which lists all.
    """
    column = roles["timestamp"]
    if column != DEFAULT_COLUMNS["timestamp"] or column in available:
        return roles
    if roles["user"] not in available or roles["item"] not in available:
        return roles
    log.warning(
        "%s has no %r column: file order is taken as time order. Name the time column with "
        "data.columns.timestamp=COLUMN, or set data.columns.timestamp=null to use file order "
        "without this notice", path, column,
    )
    return {**roles, "timestamp": None}


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


def _parquet_schema(path: Path) -> list[str]:
    """Column names of a Parquet file; a damaged or non-Parquet file is named."""
    try:
        return pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable Parquet file ({exc}); check the file, or set format: csv") from None


def _read_parquet(path: Path, roles: dict) -> tuple[pd.DataFrame, dict]:
    available = _parquet_schema(path)
    wanted = {roles[r]: r for r in ROLES if roles[r]}
    missing = [c for c in wanted if c not in available]
    if missing:
        raise DataFormatError(
            f"{path}: column(s) {missing} not found; the file has {available}; "
            "map the roles to its columns with data.columns"
        )
    try:
        frame = _read_integer_columns(path, wanted)
        if frame is None:
            frame = pd.read_parquet(path, columns=list(wanted)).rename(columns=wanted)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: its Parquet data could not be read ({exc}); the file is damaged") from None
    return frame, {"lines": len(frame), "skipped_lines": 0}


def _read_integer_columns(path: Path, wanted: Mapping[str, str]) -> pd.DataFrame | None:
    """All-integer columns without nulls, read batch by batch into preallocated arrays.

    Converting a whole table at once holds the Arrow table and its pandas copy together;
    batches keep the peak at the arrays plus one batch. ``None`` for other files."""
    file = pq.ParquetFile(path)
    schema = file.schema_arrow
    types = {column: schema.field(column).type for column in wanted}
    if not all(_is_plain_integer(t) for t in types.values()):
        return None
    rows = file.metadata.num_rows
    arrays = {column: np.empty(rows, dtype=t.to_pandas_dtype()) for column, t in types.items()}
    done = 0
    for batch in file.iter_batches(batch_size=1 << 20, columns=list(wanted)):
        if any(batch.column(c).null_count for c in wanted):
            return None
        for column in wanted:
            arrays[column][done : done + batch.num_rows] = batch.column(column).to_numpy()
        done += batch.num_rows
    return pd.DataFrame({wanted[c]: arrays[c] for c in wanted}, copy=False)


def _is_int64_compatible(dtype: Any) -> bool:
    """A numpy integer dtype whose values all fit int64 (never a nullable extension type)."""
    return isinstance(dtype, np.dtype) and (dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize <= 4))


def _is_plain_integer(kind: pa.DataType) -> bool:
    """Signed integers, or unsigned ones that always fit int64."""
    return pa.types.is_signed_integer(kind) or kind in (pa.uint8(), pa.uint16(), pa.uint32())


def _convert(raw: pd.DataFrame, path: Path, max_bad: float, report: dict) -> pd.DataFrame:
    """Typed ids and timestamps; unparsable rows are skipped and counted (or an error)."""
    if len(raw) and all(_is_int64_compatible(t) for t in raw.dtypes):
        return raw  # integers (e.g. a Parquet file's columns) have nothing to parse or skip
    out = pd.DataFrame(index=raw.index)
    bad = np.zeros(len(raw), dtype=bool)
    reasons: dict[str, int] = {}
    for role in ("user", "item"):
        try:
            out[role], missing, junk = _ids(raw[role], role, report)
        except DataFormatError as exc:
            raise DataFormatError(f"{path}: {exc}") from None
        reasons[f"missing_{role}"] = int(missing.sum())
        reasons[f"non_numeric_{role}"] = int(junk.sum())
        bad |= missing | junk
    if "timestamp" in raw.columns:
        out["timestamp"], invalid = _timestamps(raw["timestamp"])
        reasons["bad_timestamp"] = int(invalid.sum())
        bad |= invalid
    if "rating" in raw.columns:
        rating = pd.to_numeric(raw["rating"], errors="coerce")
        rating = rating.where(np.isfinite(rating.astype(np.float64)))
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


def _ids(values: pd.Series, role: str, report: dict) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Ids, a mask of missing ones and one of non-numbers in a column of numbers.

    Mostly numbers: integers when all are plain int64 integers, else (leading zeros,
    beyond int64) text, so no id changes; the few non-numbers are malformed rather
    than turning every id into text. Mostly non-numbers: text. Parsed exactly, never
    through float (which merges ids above 2**53).
    """
    missing = values.isna().to_numpy().copy()
    none = np.zeros(len(values), dtype=bool)
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        missing |= (values.astype(str).str.strip() == "").to_numpy()
    if pd.api.types.is_integer_dtype(values) and not missing.any():
        if pd.api.types.is_unsigned_integer_dtype(values) and len(values) and values.max() > INT64_MAX:
            return _ids_as_text(values.astype(str), role, values.max(), report), missing, none
        return values.astype(np.int64), missing, none
    if pd.api.types.is_float_dtype(values):
        return _float_ids(values, role), missing, none
    text = values.astype(str).str.strip().where(~missing, "")
    numbers, not_integer, outside = parse_int64(text.where(~missing, "0").to_numpy(dtype=object))
    number = ~not_integer & ~missing
    if 2 * number.sum() <= (~missing).sum():
        return text, missing, none
    junk = not_integer & ~missing
    plain = (pd.Series(numbers).astype(str).to_numpy() == text.to_numpy()) & ~outside
    if (plain | ~number).all():
        return pd.Series(numbers, index=values.index), missing, junk
    if (plain | outside | ~number).all():
        return _ids_as_text(text, role, text[outside].iloc[0], report), missing, junk
    return text, missing, junk


def _float_ids(values: pd.Series, role: str) -> pd.Series:
    """Whole-number float ids as int64; beyond 2**53 a float cannot hold distinct ids."""
    finite = values.dropna().to_numpy()
    if len(finite) and np.abs(finite).max() > FLOAT_EXACT:
        raise DataFormatError(
            f"{role} ids are stored as floating point and reach {np.abs(finite).max():.0f}, beyond "
            f"2**53, where distinct ids round to the same float; store them as integers or strings"
        )
    if np.all(np.mod(finite, 1) == 0):
        return values.fillna(-1).astype(np.int64)
    return values.astype(str)


def _ids_as_text(text: pd.Series, role: str, example: Any, report: dict) -> pd.Series:
    """Integer ids beyond int64 are kept exactly as text; the report says why."""
    note = f"{role} id {example} is outside int64, so all {role} ids are kept as text"
    report.setdefault("ids_as_text", {})[role] = note
    log.warning("%s", note)
    return text


def _timestamps(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Numbers stay numbers; otherwise dates (converted to UTC, zone dropped)."""
    if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
        stamps, not_integer, outside = parse_int64(values.fillna("").to_numpy(dtype=object))
        fractional = not_integer & pd.to_numeric(values, errors="coerce").notna().to_numpy()
        invalid = not_integer | outside
        if not fractional.any() and (~invalid).sum() >= values.notna().sum() * 0.5:
            return pd.Series(stamps, index=values.index), invalid  # exact, even ns epochs
    if not pd.api.types.is_datetime64_any_dtype(values):
        numbers = pd.to_numeric(values, errors="coerce")
        numbers = numbers.where(np.isfinite(numbers.astype(np.float64)))
        if numbers.notna().sum() >= values.notna().sum() * 0.5:  # mostly numeric: a few bad
            return numbers.fillna(0), numbers.isna().to_numpy()
        values = pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.fillna(pd.Timestamp(0)), values.isna().to_numpy()
