"""On-disk cache of preprocessed :class:`InteractionData`.

Parsing and filtering a 20M-row file takes far longer than mapping arrays back in, so
each source stores its result under ``<cache_dir>/<name>-<key>/``. The key hashes the
source's settings (loader and preprocessing options) and the size and mtime of every raw
file, so editing a setting or a file gives a new cache entry instead of stale data.

Layout of one entry: one plain ``.npy`` array per interaction column
(``interactions.<column>.npy``), the id maps as ``user_ids.npy``/``item_ids.npy``
(Parquet when the ids are strings), optional ``item_features.parquet``/
``user_features.parquet``, ``negatives_<split>.npy`` for given evaluation negatives, and
``meta.json`` (name, report, format version, column order and the sha256 of every other
file).

The columns are opened as read-only memory maps: a second run starts in seconds, and
every process that opens the entry (data-loader workers, DDP ranks, a forked child)
shares the same page-cache pages instead of holding its own copy. Neither ``.npy`` nor
Parquet carries a checksum, so each file is checked against the manifest on load
(sha256 reads about 0.8 GB/s, a few seconds for a 100M-interaction entry); a cache
entry that fails is rebuilt from its source, while a run's ``artifacts/data`` (no
source) fails with :class:`CacheIntegrityError`. Entries of format 1 (the interactions
as one Parquet file) are still read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_modules.download import file_digest
from data_modules.interactions import InteractionData

log = logging.getLogger(__name__)

# Bump when the stored layout or preprocessing semantics change: old entries are ignored.
CACHE_VERSION = 2
READABLE_VERSIONS = (1, 2)
COLUMNS = "columns"  # meta.json key: the interaction columns in order
META = "meta.json"
CHECKSUMS = "sha256"  # meta.json key: {file name: sha256 hex digest}


class CacheIntegrityError(ValueError):
    """A cached file differs from the checksum its entry recorded when it was written."""


def cache_key(settings: Mapping[str, Any], files: Iterable[str | os.PathLike]) -> str:
    """Hash of the settings and of each file's path, size and mtime (16 hex chars)."""
    stats = []
    for path in sorted(str(Path(f).resolve()) for f in files):
        stat = os.stat(path)
        stats.append([path, stat.st_size, stat.st_mtime_ns])
    payload = json.dumps(
        {"version": CACHE_VERSION, "settings": settings, "files": stats},
        sort_keys=True,
        default=_json_default,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_or_build(
    build: Callable[[], InteractionData],
    *,
    name: str,
    settings: Mapping[str, Any],
    files: Iterable[str | os.PathLike],
    cache_dir: str | os.PathLike | None,
) -> InteractionData:
    """Return the cached data for (settings, files) or build, store and return it.

    ``cache_dir=None`` disables caching. A cache folder that cannot be written only
    costs a warning: the data is still returned.
    """
    if cache_dir is None:
        return build()
    entry = Path(cache_dir) / f"{_safe(name)}-{cache_key(settings, files)}"
    if (entry / META).is_file():
        try:
            data = load(entry, require_checksums=True)
            log.info("loaded %s from cache %s", name, entry)
            return data
        except Exception as exc:  # a damaged entry is rebuilt, never trusted
            log.warning("ignoring damaged or unverifiable cache entry %s (%s); rebuilding it from the source", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
    data = build()
    try:
        save(data, entry)
        log.info("cached %s at %s", name, entry)
        # Serve the columns from the entry just written, as a later run would: the
        # built copies are freed and forked workers share the mapped pages.
        data.interactions = _read_interactions(entry, read_manifest(entry / META))
    except OSError as exc:
        log.warning("could not write cache %s (%s); set cache_dir to a writable folder", entry, exc)
    return data


def save(data: InteractionData, entry: str | os.PathLike) -> None:
    """Write ``data`` to ``entry`` atomically (temp folder + rename)."""
    entry = Path(entry)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        for column in data.interactions.columns:
            np.save(tmp / _column_file(column), data.column(column), allow_pickle=False)
        _write_ids(data.user_ids, tmp, "user_ids")
        _write_ids(data.item_ids, tmp, "item_ids")
        for kind, frame in (("item", data.item_features), ("user", data.user_features)):
            if frame is not None:
                frame.to_parquet(tmp / f"{kind}_features.parquet")
        for split, negatives in data.eval_negatives.items():
            np.save(tmp / f"negatives_{split}.npy", np.asarray(negatives))
        meta = {
            "version": CACHE_VERSION,
            "name": data.name,
            "report": data.report,
            "negatives": sorted(data.eval_negatives),
            COLUMNS: [str(c) for c in data.interactions.columns],
            CHECKSUMS: {path.name: file_digest(path, "sha256") for path in sorted(tmp.iterdir())},
        }
        (tmp / META).write_text(json.dumps(meta, default=_json_default, indent=1))
        _publish(tmp, entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, entry: Path) -> None:
    """Rename ``tmp`` to ``entry``. If another process (e.g. another rank) published the
    same entry first, keep theirs; a damaged old entry is replaced."""
    try:
        os.replace(tmp, entry)
        return
    except OSError:
        if (entry / META).is_file():
            return
    shutil.rmtree(entry, ignore_errors=True)
    os.replace(tmp, entry)


def read_manifest(path: Path) -> dict:
    """A JSON object from ``path``; damaged bytes are a :class:`CacheIntegrityError` naming it."""
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CacheIntegrityError(f"{path} is damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise CacheIntegrityError(f"{path} is damaged: it holds {type(meta).__name__}, not an object")
    return meta


def load(entry: str | os.PathLike, *, require_checksums: bool = False) -> InteractionData:
    """Read an entry written by :func:`save`, each file checked against its manifest.

    The interaction columns come back as read-only memory maps wrapped by the frame
    without a copy. An entry without checksums (written before they existed) is read
    with a warning, or refused with ``require_checksums``.
    """
    entry = Path(entry)
    meta = read_manifest(entry / META)
    if meta.get("version") not in READABLE_VERSIONS:
        raise ValueError(f"cache format {meta.get('version')} is not one of {READABLE_VERSIONS}")
    verify_entry(entry, meta, require_checksums)
    features = {}
    for kind in ("item", "user"):
        path = entry / f"{kind}_features.parquet"
        features[kind] = _read_frame(path) if path.exists() else None
    return InteractionData(
        interactions=_read_interactions(entry, meta),
        user_ids=_read_ids(entry, "user_ids"),
        item_ids=_read_ids(entry, "item_ids"),
        name=meta["name"],
        eval_negatives={s: np.load(entry / f"negatives_{s}.npy") for s in meta["negatives"]},
        item_features=features["item"],
        user_features=features["user"],
        report=meta["report"],
    )


def verify_entry(entry: Path, meta: dict[str, Any], require_checksums: bool = False) -> None:
    """Every data file of ``entry`` is listed in the manifest and matches its sha256."""
    expected = meta.get(CHECKSUMS)
    names = _data_files(entry, meta)
    if expected is None:
        if require_checksums:
            raise CacheIntegrityError(f"{entry / META} records no checksums (an older cache entry)")
        log.warning("%s records no checksums (written by an older version); its files are read unverified", entry / META)
        return
    if not isinstance(expected, dict):
        raise CacheIntegrityError(f"{entry / META}: '{CHECKSUMS}' must map file names to sha256 digests")
    for name in names:
        if name not in expected or not (entry / name).is_file():
            raise CacheIntegrityError(f"{entry / name} is missing or not listed in {entry / META}; the entry was altered")
        actual = file_digest(entry / name, "sha256")
        if actual != str(expected[name]).lower():
            raise CacheIntegrityError(
                f"{entry / name} does not match the sha256 recorded in {entry / META} "
                f"({actual}, expected {expected[name]}); the file was altered or damaged"
            )


def _data_files(entry: Path, meta: dict[str, Any]) -> list[str]:
    """Names of the files :func:`load` reads (all present features, the listed negatives)."""
    splits = [str(s) for s in meta.get("negatives", [])]
    unsafe = [s for s in splits if not s or Path(s).name != s or s in (".", "..")]
    if unsafe:
        raise CacheIntegrityError(f"{entry / META} names negatives split(s) {unsafe} that are not plain names")
    if meta.get("version") == 1:
        names = ["interactions.parquet", "user_ids.parquet", "item_ids.parquet"]
    else:
        names = [_column_file(c) for c in _columns(entry, meta)]
        names += [_ids_file(entry, kind) for kind in ("user_ids", "item_ids")]
    names += [f"{kind}_features.parquet" for kind in ("item", "user") if (entry / f"{kind}_features.parquet").exists()]
    return names + [f"negatives_{s}.npy" for s in splits]


def _column_file(column: str) -> str:
    return f"interactions.{column}.npy"


def _columns(entry: Path, meta: dict[str, Any]) -> list[str]:
    """The manifest's interaction columns, refused unless they are plain names."""
    columns = meta.get(COLUMNS)
    if not isinstance(columns, list) or not columns:
        raise CacheIntegrityError(f"{entry / META} lists no interaction columns; the entry was altered")
    unsafe = [c for c in columns if not isinstance(c, str) or not c or Path(c).name != c or c in (".", "..")]
    if unsafe:
        raise CacheIntegrityError(f"{entry / META} names interaction column(s) {unsafe} that are not plain names")
    return columns


def _read_interactions(entry: Path, meta: dict[str, Any]) -> pd.DataFrame:
    """The interaction columns as read-only memory maps (format 1: one Parquet file)."""
    if meta.get("version") == 1:
        return pd.read_parquet(entry / "interactions.parquet")
    columns = {c: _load_array(entry / _column_file(c), mmap=True) for c in _columns(entry, meta)}
    return pd.DataFrame(columns, copy=False)


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """A plain ``.npy`` array (never pickled objects); a header that does not parse is
    damage, named."""
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CacheIntegrityError(f"{path} is damaged ({exc})") from None
    # A plain ndarray view of the map (its base): same pages, but compares and
    # pickles like any other array.
    return array.view(np.ndarray)


def _ids_file(entry: Path, kind: str) -> str:
    """``<kind>.npy`` for numeric ids, ``<kind>.parquet`` for strings (and format 1)."""
    return f"{kind}.npy" if (entry / f"{kind}.npy").exists() else f"{kind}.parquet"


def _write_ids(ids: np.ndarray, folder: Path, kind: str) -> None:
    ids = np.asarray(ids)
    if ids.dtype.kind in "iuf":
        np.save(folder / f"{kind}.npy", ids, allow_pickle=False)
    else:
        pq.write_table(pa.table({"raw": pa.array(ids)}), folder / f"{kind}.parquet")


def _read_ids(entry: Path, kind: str) -> np.ndarray:
    path = entry / _ids_file(entry, kind)
    if path.suffix == ".npy":
        return _load_array(path, mmap=False)
    return pq.read_table(path).column("raw").to_numpy(zero_copy_only=False)


def _read_frame(path: Path) -> pd.DataFrame:
    """Parquet gives list cells back as numpy arrays; turn them into lists as written."""
    table = pq.read_table(path)
    frame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            frame[field.name] = pd.Series(
                table.column(field.name).to_pylist(), index=frame.index, dtype=object
            )
    return frame


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, (np.ndarray, tuple, set)):
        return list(value.tolist() if isinstance(value, np.ndarray) else value)
    if isinstance(value, os.PathLike):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in the cache metadata")
