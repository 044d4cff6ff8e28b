"""Feature tables (pandas) -> :class:`~data_modules.feature_arrays.FeatureArrays` (numpy).

Models never see pandas or files: this module is the only place where side-feature
columns are interpreted. Each column gets one *kind*:

- ``multi``: list cells (``genres``) -> a vocabulary and a [rows, max_values] code
  matrix padded with -1;
- ``categorical``: strings, booleans and integers with few distinct values (MovieLens
  ``gender``, ``age`` bucket codes, ``occupation`` codes) -> codes, -1 when missing;
- ``numeric``: other numbers (``year``) -> standardised floats, 0 (the mean) when missing.

With ``use="all"`` columns that carry no reusable signal are skipped and reported:
identifiers (integers that differ on every row, e.g. ``movie_id``) and free text
(strings with more distinct values than half the rows, e.g. ``title``, ``zip``). Naming
such a column explicitly encodes it anyway (as categorical unless ``kinds`` says otherwise).

Vocabularies are sorted and statistics come from the whole table, so encoding the
same data twice (training, then reloading a run) gives identical arrays.

Precomputed item text embeddings (e.g. of titles or plots) are read from a file keyed
by *raw* item id and appended to the numeric part as-is:

- ``.npy``: a 2-D array, column 0 the raw item id (numeric ids), the rest the vector;
- ``.npz``: arrays ``ids`` [N] and ``embeddings`` [N, D];
- ``.parquet``: a key column ``item`` and either one list column ``embedding`` or only
  numeric columns (one per dimension).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_modules.feature_arrays import FeatureArrays
from data_modules.id_index import IdIndex
from data_modules.interactions import InteractionData
from data_modules.preprocessing import DataFormatError

log = logging.getLogger(__name__)

ALL = "all"
KINDS = ("categorical", "multi", "numeric")
TEXT = "text"  # name of the text-embedding dimensions in FeatureArrays.numeric_names
# Integer columns with at most this many distinct values are codes, not quantities.
MAX_INTEGER_CODES = 32
# Strings with more distinct values than this share of the rows are free text.
MAX_DISTINCT_SHARE = 0.5


# --- column kinds ------------------------------------------------------------------------


def detect_kind(column: pd.Series) -> tuple[str | None, str]:
    """(kind, why); kind None means "skip unless asked for" (identifier, free text, empty)."""
    present = column.dropna()
    if present.empty:
        return None, "no values"
    if isinstance(present.iloc[0], (list, tuple, np.ndarray)):
        return "multi", "list cells"
    if pd.api.types.is_bool_dtype(column):
        return "categorical", "boolean"
    distinct = present.nunique()
    if pd.api.types.is_numeric_dtype(column):
        values = present.to_numpy(dtype=np.float64)
        if not np.all(np.mod(values, 1) == 0):
            return "numeric", "fractional numbers"
        if distinct <= MAX_INTEGER_CODES:
            return "categorical", f"integer codes ({distinct} distinct)"
        if distinct == len(present):
            return None, f"identifier (all {distinct} values distinct)"
        return "numeric", f"integers ({distinct} distinct)"
    if distinct > MAX_INTEGER_CODES and distinct > MAX_DISTINCT_SHARE * len(present):
        return None, f"free text ({distinct} distinct values in {len(present)} rows); use text embeddings"
    return "categorical", f"strings ({distinct} distinct)"


# --- encoders per kind -------------------------------------------------------------------


def _vocabulary(values: Iterable[Any]) -> list[Any]:
    unique = pd.unique(pd.Series(list(values), dtype=object))
    try:
        return sorted(unique)
    except TypeError:  # mixed types: a stable order by text
        return sorted(unique, key=str)


def encode_categorical(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes [rows] in a sorted vocabulary, -1 where missing."""
    present = column.dropna()
    vocab = _vocabulary(present.to_numpy(dtype=object))
    codes = pd.Categorical(column.astype(object), categories=vocab).codes.astype(np.int64)
    return codes, [str(v) for v in vocab]


def encode_multi(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes [rows, max_values] padded with -1; a missing or empty cell is all -1."""
    cells = [c if isinstance(c, (list, tuple, np.ndarray)) else [] for c in column.tolist()]
    lengths = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
    flat = list(chain.from_iterable(cells))
    vocab = _vocabulary(v for v in flat if v is not None and v == v)
    codes = pd.Categorical(pd.Series(flat, dtype=object), categories=vocab).codes.astype(np.int64)
    rows = np.repeat(np.arange(len(cells)), lengths)
    offsets = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = np.full((len(cells), max(int(lengths.max(initial=0)), 1)), -1, dtype=np.int64)
    out[rows, offsets] = codes
    return out, [str(v) for v in vocab]


def encode_numeric(column: pd.Series, name: str) -> tuple[np.ndarray, int]:
    """Standardised values [rows, 1] (missing -> 0) and the number of missing rows."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    if missing.all():
        raise DataFormatError(f"numeric feature {name!r} has no numeric value; drop it from use_features")
    mean, std = values[~missing].mean(), values[~missing].std()
    scaled = (values - mean) / (std if std > 0 else 1.0)
    scaled[missing] = 0.0
    return scaled.astype(np.float32)[:, None], int(missing.sum())


# --- one table ---------------------------------------------------------------------------


def encode_table(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    text: np.ndarray | None = None,
) -> tuple[FeatureArrays, dict[str, Any]]:
    """Encode ``columns`` of ``frame`` (``None``: every usable column) and the report.

    ``frame`` rows are internal ids ``0..len-1``; ``text`` ([rows, D]) is appended to
    the numeric part under the name :data:`TEXT`.
    """
    kinds = dict(kinds or {})
    report: dict[str, Any] = {"used": {}, "skipped": {}}
    categorical, cardinalities, multi, vocabularies = {}, {}, {}, {}
    numeric_parts, numeric_names = [], []
    explicit = columns is not None
    for name in frame.columns if columns is None else columns:
        kind, why = detect_kind(frame[name])
        if name in kinds:
            if kinds[name] == "multi" and kind != "multi":
                raise ValueError(f"feature_kinds: {name!r} has no list cells, so it cannot be 'multi'")
            kind, why = kinds[name], "set in feature_kinds"
        elif kind is None and explicit and why != "no values":
            kind = "categorical"
            log.warning("feature %r looks like %s; encoding it as categorical as requested", name, why)
        if kind is None:
            report["skipped"][name] = why
            continue
        if kind == "numeric":
            values, missing = encode_numeric(frame[name], name)
            numeric_parts.append(values)
            numeric_names.append(name)
            report["used"][name] = {"kind": kind, "why": why, "missing": missing}
            continue
        values, vocab = (encode_multi if kind == "multi" else encode_categorical)(frame[name])
        if not vocab:
            report["skipped"][name] = "no values"
            continue
        categorical[name], cardinalities[name], multi[name] = values, len(vocab), kind == "multi"
        vocabularies[name] = vocab
        missing = int((values < 0).all(axis=-1).sum()) if kind == "multi" else int((values < 0).sum())
        report["used"][name] = {"kind": kind, "why": why, "values": len(vocab), "missing": missing}
    if text is not None:
        numeric_parts.append(np.asarray(text, dtype=np.float32))
        numeric_names += [TEXT] * text.shape[1]
    arrays = FeatureArrays(
        num_rows=len(frame),
        categorical=categorical,
        cardinalities=cardinalities,
        multi_valued=multi,
        numeric=np.concatenate(numeric_parts, axis=1) if numeric_parts else None,
        numeric_names=numeric_names,
        vocabularies=vocabularies,
    )
    return arrays, report


# --- text embeddings ---------------------------------------------------------------------


def read_text_embeddings(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids [N], vectors [N, D]) from a ``.npy``/``.npz``/``.parquet`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"text embedding file {path} does not exist; fix model.net.item_text_embeddings or set it to null"
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path)
        if array.ndim != 2 or array.shape[1] < 2:
            raise DataFormatError(
                f"{path}: a .npy text embedding file must be 2-D [items, 1 + dim] with the raw "
                f"item id in column 0; got shape {array.shape}. For string ids use .npz (ids, embeddings)"
            )
        return array[:, 0], array[:, 1:]
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if "ids" not in arrays or "embeddings" not in arrays:
                raise DataFormatError(f"{path}: a .npz text embedding file needs arrays 'ids' and 'embeddings'")
            return arrays["ids"], arrays["embeddings"]
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        if "item" not in frame.columns:
            raise DataFormatError(f"{path}: no 'item' column (raw item id) among {list(frame.columns)}")
        ids = frame.pop("item").to_numpy()
        if "embedding" in frame.columns:
            return ids, np.stack(frame["embedding"].to_numpy())
        return ids, frame.to_numpy(dtype=np.float32)
    raise DataFormatError(f"{path}: text embeddings must be a .npy, .npz or .parquet file")


def align_text_embeddings(
    ids: np.ndarray, vectors: np.ndarray, item_ids: np.ndarray, source: str = "text embeddings"
) -> tuple[np.ndarray, dict[str, int]]:
    """Vectors per internal item [num_items, D] (zeros where missing) and counts."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise DataFormatError(f"{source}: need one vector per id; got {len(ids)} ids, vectors {vectors.shape}")
    if np.issubdtype(np.asarray(item_ids).dtype, np.integer) and np.issubdtype(ids.dtype, np.floating):
        ids = ids.astype(np.int64)
    index = pd.Index(ids)
    if index.has_duplicates:
        raise DataFormatError(f"{source}: item id {index[index.duplicated()][0]!r} appears twice")
    position = IdIndex(ids, "text embedding item").lookup(item_ids)
    found = position >= 0
    if len(item_ids) and not found.any():
        raise DataFormatError(
            f"{source}: none of its {len(ids)} ids matches an item id (file ids like {ids[:1]}, "
            f"data ids like {item_ids[:1]}); the file must be keyed by the raw item ids"
        )
    out = np.zeros((len(item_ids), vectors.shape[1]), dtype=np.float32)
    out[found] = vectors[position[found]]
    counts = {"items_without_text": int((~found).sum()), "unused_rows": int(len(ids) - found.sum())}
    if counts["items_without_text"]:
        log.warning("%s: %d item(s) have no vector (zeros used)", source, counts["items_without_text"])
    return out, counts


# --- a data set --------------------------------------------------------------------------


def resolve_columns(
    use: str | Sequence[str] | None, frames: Mapping[str, pd.DataFrame | None]
) -> dict[str, list[str] | None]:
    """Per table, the columns to encode (None: every usable one; [] none).

    A name found in both tables is used in both; an unknown name is an error that
    lists what exists.
    """
    if use is None or (isinstance(use, str) and use.lower() == "none"):
        return {kind: [] for kind in frames}
    if isinstance(use, str):
        if use != ALL:
            raise ValueError(f"use_features={use!r}: give '{ALL}', 'none' or a list of column names")
        return {kind: None for kind in frames}
    use = [str(u) for u in use]
    chosen: dict[str, list[str] | None] = {}
    for kind, frame in frames.items():
        chosen[kind] = [u for u in use if frame is not None and u in frame.columns]
    known = {c for frame in frames.values() if frame is not None for c in frame.columns}
    unknown = [u for u in use if u not in known]
    if unknown:
        tables = {k: (list(f.columns) if f is not None else None) for k, f in frames.items()}
        raise ValueError(
            f"use_features names {unknown}, which this model cannot use: its feature tables "
            f"have columns {tables} (None: the data has no such table or the model takes none)"
        )
    return chosen


def encode_features(
    data: InteractionData,
    use: str | Sequence[str] | None = ALL,
    kinds: Mapping[str, str] | None = None,
    item_text_embeddings: str | os.PathLike | None = None,
    items: bool = True,
    users: bool = True,
) -> tuple[FeatureArrays | None, FeatureArrays | None, dict[str, Any]]:
    """(item features, user features, report) of ``data`` for a model.

    ``items``/``users`` say which tables the model takes; a table that is absent, not
    taken, or left with no column gives None.
    """
    kinds = dict(kinds or {})
    bad = {k: v for k, v in kinds.items() if v not in KINDS}
    if bad:
        raise ValueError(f"feature_kinds {bad}: each kind must be one of {list(KINDS)}")
    frames = {
        "items": data.item_features if items else None,
        "users": data.user_features if users else None,
    }
    columns = resolve_columns(use, frames)
    report: dict[str, Any] = {}
    text = None
    if item_text_embeddings and items:
        ids, vectors = read_text_embeddings(item_text_embeddings)
        text, report["text"] = align_text_embeddings(ids, vectors, data.item_ids, str(item_text_embeddings))
    encoded: dict[str, FeatureArrays | None] = {}
    for kind, frame in frames.items():
        extra = text if kind == "items" else None
        if frame is None and extra is not None:
            frame = pd.DataFrame(index=pd.RangeIndex(data.num_items))
        if frame is None:
            encoded[kind] = None
            continue
        _check_rows(frame, data.num_items if kind == "items" else data.num_users, kind)
        arrays, report[kind] = encode_table(frame, columns[kind], kinds, extra)
        encoded[kind] = arrays if arrays else None
        log.info("%s features: %s; skipped %s", kind, arrays.describe(), report[kind]["skipped"] or "none")
    return encoded["items"], encoded["users"], report


def _check_rows(frame: pd.DataFrame, expected: int, kind: str) -> None:
    if len(frame) != expected or not frame.index.equals(pd.RangeIndex(expected)):
        raise DataFormatError(
            f"{kind} feature table must have one row per internal id 0..{expected - 1} (as "
            f"preprocess() aligns it); got {len(frame)} rows"
        )
