"""Canonical raw table -> :class:`InteractionData`.

Every source produces the same *raw table* (columns ``user``, ``item``, optional
``timestamp``, optional ``rating``, optional ``split``; raw ids of any sortable type)
and hands it to :func:`preprocess`, so filtering, id remapping and splitting behave the
same whatever the file format was.

Steps, in order (each one counted in ``report``):

1. ``rating_threshold``: keep rows with ``rating >= threshold`` (implicit feedback).
2. stable sort by (user, timestamp): ties keep their file order.
3. ``dedup``: keep the first (earliest) occurrence of each (user, item) pair.
4. iterative k-core: drop users with fewer than ``min_user_interactions`` and items with
   fewer than ``min_item_interactions`` rows, repeated until nothing changes.
5. dense ids: ``0..n-1`` in sorted raw-id order (already dense 0-based ids stay the same).
6. split: ``loo`` (last -> TEST, second-last -> VAL; users with fewer than 3 rows are
   kept in TRAIN or dropped, see ``short_users``), ``ratio`` (per-user chronological
   fractions), ``time`` (global timestamp cutoffs) or ``given`` (the raw ``split`` column);
   ``validation: train`` then trains on the validation rows too (no validation set).

:func:`require_eval_rows` (run by every file source) then refuses a split that left no
validation or test rows, before any training.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from data_modules.interactions import SPLIT_CODES, TEST, TRAIN, VAL, InteractionData

log = logging.getLogger(__name__)

SPLITS = ("loo", "ratio", "time", "given")
SHORT_USERS = ("train_only", "drop")
# holdout: validation interactions are held out (checkpoints chosen on them); train: they
# are trained on too, so no validation set remains (protocol=refit: fixed epochs, last
# checkpoint tested).
VALIDATION_MODES = ("holdout", "train")
# Tables at least this long get a stage progress bar.
PROGRESS_MIN_ROWS = 200_000


class DataFormatError(ValueError):
    """Input data breaks the expected format; the message names the place and the fix."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Preprocessing options (the ``preprocess:`` block of every ``conf/data/*.yaml``)."""

    rating_threshold: float | None = None
    dedup: bool = True
    min_user_interactions: int = 0
    min_item_interactions: int = 0
    split: str = "loo"
    short_users: str = "train_only"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    time_cutoffs: tuple[float, float] | None = None
    time_quantiles: tuple[float, float] | None = None
    validation: str = "holdout"

    def __post_init__(self) -> None:
        self._check_types()
        if self.validation not in VALIDATION_MODES:
            raise ValueError(
                f"preprocess.validation={self.validation!r} is unknown; use one of {VALIDATION_MODES}"
            )
        if self.split not in SPLITS:
            raise ValueError(f"preprocess.split={self.split!r} is unknown; use one of {SPLITS}")
        if self.short_users not in SHORT_USERS:
            raise ValueError(
                f"preprocess.short_users={self.short_users!r} is unknown; use one of {SHORT_USERS}"
            )
        if self.min_user_interactions < 0 or self.min_item_interactions < 0:
            raise ValueError("preprocess.min_user_interactions/min_item_interactions must be >= 0")
        ratios = tuple(float(r) for r in self.ratios)
        if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] <= 0:
            raise ValueError(
                f"preprocess.ratios={list(self.ratios)} must be three fractions "
                "[train, val, test] summing to 1 with train > 0, e.g. [0.8, 0.1, 0.1]"
            )
        object.__setattr__(self, "ratios", ratios)
        for key in ("time_cutoffs", "time_quantiles"):
            value = getattr(self, key)
            if value is not None:
                value = tuple(float(v) for v in value)
                if len(value) != 2 or value[0] > value[1]:
                    raise ValueError(
                        f"preprocess.{key}={list(value)} must be [val_start, test_start] "
                        "with val_start <= test_start"
                    )
                object.__setattr__(self, key, value)
        if self.time_quantiles is not None and not 0 <= self.time_quantiles[0] <= 1:
            raise ValueError("preprocess.time_quantiles must lie in [0, 1], e.g. [0.8, 0.9]")
        if self.split == "time" and (self.time_cutoffs is None) == (self.time_quantiles is None):
            raise ValueError(
                "preprocess.split='time' needs exactly one of time_cutoffs "
                "(absolute timestamps [val_start, test_start]) or time_quantiles (e.g. [0.8, 0.9])"
            )

    def _check_types(self) -> None:
        """Wrong types fail here, naming the key, not as a TypeError in a later step."""
        checks = {
            "rating_threshold": (_is_number_or_none, "a number or null"),
            "dedup": (lambda v: isinstance(v, bool), "true or false"),
            "min_user_interactions": (_is_int, "an integer"),
            "min_item_interactions": (_is_int, "an integer"),
            "ratios": (_is_numbers, "a list of three numbers, e.g. [0.8, 0.1, 0.1]"),
            "time_cutoffs": (lambda v: v is None or _is_numbers(v), "null or [val_start, test_start]"),
            "time_quantiles": (lambda v: v is None or _is_numbers(v), "null or two quantiles, e.g. [0.8, 0.9]"),
        }
        for key, (valid, expected) in checks.items():
            if not valid(getattr(self, key)):
                raise ValueError(f"preprocess.{key}={getattr(self, key)!r} must be {expected}")

    @classmethod
    def of(cls, value: "PreprocessConfig | Mapping[str, Any] | None") -> "PreprocessConfig":
        """Accept a config object, a plain/Hydra mapping, or ``None`` (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"unknown preprocess option(s) {unknown}; valid options are {sorted(known)}"
            )
        return cls(**{k: _plain(v) for k, v in value.items()})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def cache_settings(self) -> dict[str, Any]:
        """:meth:`to_dict` without options added later that are at their default, so
        caches built before those options existed stay valid."""
        return {k: v for k, v in self.to_dict().items() if _LATER_DEFAULTS.get(k, object()) != v}


_LATER_DEFAULTS = {"validation": "holdout"}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float, np.number)) and not isinstance(value, bool))


def _is_numbers(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(_is_number_or_none(v) and v is not None for v in value)


def _plain(value: Any) -> Any:
    """Hydra ListConfig/list -> tuple so the frozen config stays hashable and comparable."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return tuple(value)
    return value


def preprocess(
    raw: pd.DataFrame,
    config: PreprocessConfig | Mapping[str, Any] | None = None,
    *,
    name: str = "data",
    item_features: pd.DataFrame | None = None,
    user_features: pd.DataFrame | None = None,
    source_report: dict[str, Any] | None = None,
    progress: bool | None = None,
) -> InteractionData:
    """Filter, remap and split a raw table (see the module docstring for the steps).

    ``item_features``/``user_features`` are indexed by *raw* id; the result's are
    indexed by internal id and hold exactly the kept ids (missing ones are counted).
    The steps work on the columns as compact numpy arrays (no DataFrame copies), so
    the peak memory of a 100M-row table stays a small multiple of its columns.
    """
    cfg = PreprocessConfig.of(config)
    show = len(raw) >= PROGRESS_MIN_ROWS if progress is None else progress
    report: dict[str, Any] = {"source": dict(source_report or {}), "preprocess": cfg.to_dict()}
    with tqdm(total=6, desc=f"preprocess {name}", disable=not show, leave=False) as bar:
        table = _validate(raw, cfg, report)
        # Ids become integer codes in sorted raw-id order once; every later step
        # (sort, dedup, k-core, split, remap) works on those codes.
        table["user"], user_raw = _encode(table["user"], "user")
        table["item"], item_raw = _encode(table["item"], "item")
        for label, step in STEPS:
            bar.set_postfix_str(label)
            table = step(table, cfg, report)
            bar.update()
        bar.set_postfix_str("remap")
        interactions, user_ids, item_ids = _remap(table, user_raw, item_raw)
        bar.update()
        bar.set_postfix_str("features")
        data = InteractionData(
            interactions=interactions,
            user_ids=user_ids,
            item_ids=item_ids,
            name=name,
            item_features=_align_features(item_features, item_ids, "item", report),
            user_features=_align_features(user_features, user_ids, "user", report),
            report=report,
        )
        bar.update()
    counts = np.bincount(interactions["split"].to_numpy().astype(np.intp), minlength=3)
    report.update(
        num_users=data.num_users,
        num_items=data.num_items,
        num_interactions=len(interactions),
        split_counts={"train": int(counts[TRAIN]), "val": int(counts[VAL]), "test": int(counts[TEST])},
    )
    return data


# --- steps ---------------------------------------------------------------------------

# The table the steps pass along: column name -> array, all of one length.
Table = dict[str, np.ndarray]


def _rows(table: Table) -> int:
    return len(table["user"])


def _take(table: Table, index: np.ndarray) -> Table:
    """Rows ``index`` (positions or a boolean mask) of every column, one column at a time."""
    return {column: values[index] for column, values in table.items()}


def _validate(raw: pd.DataFrame, cfg: PreprocessConfig, report: dict) -> Table:
    """Check the raw-table contract and return the known columns as arrays (no copies
    of numeric columns)."""
    missing = [c for c in ("user", "item") if c not in raw.columns]
    if missing:
        raise DataFormatError(
            f"raw interaction table lacks column(s) {missing} (has {list(raw.columns)}); "
            "a source must name its columns user, item, timestamp[, rating]"
        )
    table: Table = {"user": raw["user"].to_numpy(), "item": raw["item"].to_numpy()}
    if "timestamp" in raw.columns:
        table["timestamp"] = _as_timestamp(raw["timestamp"])
    else:
        table["timestamp"] = np.arange(len(raw), dtype=np.int64)
        report["timestamp_from_row_order"] = True
    if "rating" in raw.columns:
        table["rating"] = pd.to_numeric(raw["rating"], errors="coerce").to_numpy(np.float32)
    if cfg.split == "given":
        if "split" not in raw.columns:
            raise DataFormatError("preprocess.split='given' needs a 'split' column in the raw table")
        table["split"] = _as_split_codes(raw["split"])
    report["rows_in"] = len(raw)
    for column, values in table.items():
        nulls = _count_missing(values)
        if nulls:
            raise DataFormatError(
                f"raw interaction table has {nulls} row(s) with a missing {column!r}; "
                "the loader must skip and count them before preprocessing"
            )
    if len(raw) == 0:
        raise ValueError(f"the source produced no interactions (report: {report['source']})")
    return table


def _count_missing(values: np.ndarray) -> int:
    """Missing entries (NaN, None, NaT); integer columns have none and are not scanned."""
    if values.dtype.kind in "iub":
        return 0
    if values.dtype.kind == "f":
        return int(np.isnan(values).sum())
    return int(pd.isna(values).sum())


def _as_timestamp(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.to_numpy("datetime64[s]").astype(np.int64)
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        if pd.api.types.is_integer_dtype(column) and not column.hasnans:
            return column.to_numpy().astype(np.int64, copy=False)
        values = column.to_numpy(dtype=np.float64 if column.hasnans else None)
        integral = np.issubdtype(values.dtype, np.integer) or (
            not column.hasnans and np.all(np.mod(values, 1) == 0)
        )
        return values.astype(np.int64) if integral else values.astype(np.float64)
    raise DataFormatError(
        f"timestamp column has dtype {column.dtype}; give numbers or datetimes "
        "(a source should parse date strings with pandas.to_datetime)"
    )


def _as_split_codes(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column):
        codes = column.to_numpy()
        bad = ~np.isin(codes, list(SPLIT_CODES.values()))
    else:
        mapped = column.astype(str).str.lower().map(SPLIT_CODES)
        bad = mapped.isna().to_numpy()
        codes = mapped.fillna(-1).to_numpy()
    if bad.any():
        raise DataFormatError(
            f"'split' column has {int(bad.sum())} value(s) outside {SPLIT_CODES}, "
            f"e.g. {column[bad].iloc[0]!r}"
        )
    return codes.astype(np.int8)


def _apply_threshold(table: Table, cfg: PreprocessConfig, report: dict) -> Table:
    if cfg.rating_threshold is None:
        return table
    if "rating" not in table:
        raise DataFormatError(
            f"preprocess.rating_threshold={cfg.rating_threshold} needs ratings, but this source "
            "has none; set rating_threshold: null"
        )
    ratings = table["rating"]
    keep = ratings >= cfg.rating_threshold
    report["below_threshold_removed"] = int((~keep).sum())
    if not keep.any():
        raise ValueError(
            f"rating_threshold={cfg.rating_threshold} removed all {len(ratings)} interactions "
            f"(ratings range {ratings.min()}..{ratings.max()}); lower preprocess.rating_threshold "
            "or set it to null"
        )
    return table if keep.all() else _take(table, keep)


def _sort_and_dedup(table: Table, cfg: PreprocessConfig, report: dict) -> Table:
    """Stable (user, timestamp) sort; ``dedup`` then keeps each pair's earliest row."""
    users, stamps = table["user"], table["timestamp"]
    if not _sorted_by_user_time(users, stamps):  # files are often sorted already: no sort
        by_time = np.argsort(stamps, kind="stable")
        order = by_time[np.argsort(users[by_time], kind="stable")]
        del by_time
        table = _take(table, order)
        del order
    if not cfg.dedup:
        report["duplicates_removed"] = 0
        return table
    first = _first_of_each_pair(table["user"], table["item"])
    report["duplicates_removed"] = int(len(first) - first.sum())
    return table if report["duplicates_removed"] == 0 else _take(table, first)


def _sorted_by_user_time(users: np.ndarray, stamps: np.ndarray) -> bool:
    """Whether rows are already in (user, timestamp) order (checked without a sort)."""
    later_user = users[1:] > users[:-1]
    same_user = users[1:] == users[:-1]
    return bool(np.all(later_user | (same_user & (stamps[1:] >= stamps[:-1]))))


def _first_of_each_pair(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Mask of the first row of each (user, item) pair in row order.

    A stable sort of the pair keys keeps row order inside each pair, so the first of a
    run of equal keys is the pair's first row: no hash table over every row.
    """
    keys = users.astype(np.int64) * (int(items.max()) + 1) + items
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    repeated = keys[1:] == keys[:-1]
    del keys
    first = np.ones(len(order), dtype=bool)
    first[order[1:][repeated]] = False
    return first


def _kcore(table: Table, cfg: PreprocessConfig, report: dict) -> Table:
    """Drop sparse users/items until every kept one meets its minimum (iterative k-core)."""
    min_user, min_item = cfg.min_user_interactions, cfg.min_item_interactions
    if min_user <= 1 and min_item <= 1:
        return table
    users, items = table["user"], table["item"]
    keep = np.ones(len(users), dtype=bool)
    kept = len(users)
    rounds = 0
    while True:
        user_counts = np.bincount(users[keep], minlength=int(users.max()) + 1)
        item_counts = np.bincount(items[keep], minlength=int(items.max()) + 1)
        keep &= (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        rounds += 1
        now = int(keep.sum())
        if now == kept:
            break
        kept = now
    report["kcore"] = {
        "rounds": rounds,
        "rows_removed": int((~keep).sum()),
        "users_removed": _count_ids(users) - _count_ids(users[keep]),
        "items_removed": _count_ids(items) - _count_ids(items[keep]),
    }
    if not keep.any():
        raise ValueError(
            f"k-core filtering (min_user_interactions={min_user}, "
            f"min_item_interactions={min_item}) removed all {len(users)} interactions after "
            f"{rounds} round(s); lower preprocess.min_user_interactions/min_item_interactions"
        )
    return table if keep.all() else _take(table, keep)


def _count_ids(codes: np.ndarray) -> int:
    return int(np.count_nonzero(np.bincount(codes))) if len(codes) else 0


def _split(table: Table, cfg: PreprocessConfig, report: dict) -> Table:
    """Assign TRAIN/VAL/TEST, then (``validation: train``) fold VAL into TRAIN."""
    table = _assign_split(table, cfg, report)
    if cfg.validation == "train":
        folded = table["split"] == VAL
        report["split"]["validation_rows_trained_on"] = int(folded.sum())
        table = {**table, "split": np.where(folded, np.int8(TRAIN), table["split"]).astype(np.int8)}
    return table


def _assign_split(table: Table, cfg: PreprocessConfig, report: dict) -> Table:
    """Assign TRAIN/VAL/TEST; ``table`` is sorted by (user, timestamp)."""
    if cfg.split == "given":
        report["split"] = {"method": "given"}
        return table
    if cfg.split == "time":
        return _time_split(table, cfg, report)
    users = table["user"]  # sorted codes, possibly with gaps after filtering
    lengths = np.bincount(users)
    starts = np.cumsum(lengths) - lengths
    from_end = lengths[users] - 1 - (np.arange(len(users)) - starts[users])
    split = np.full(len(users), TRAIN, dtype=np.int8)
    if cfg.split == "ratio":
        n_test = np.floor(lengths * cfg.ratios[2]).astype(np.int64)[users]
        n_val = np.floor(lengths * cfg.ratios[1]).astype(np.int64)[users]
        split[from_end < n_test + n_val] = VAL
        split[from_end < n_test] = TEST
        report["split"] = {"method": "ratio", "ratios": list(cfg.ratios)}
        return {**table, "split": split}
    short = lengths[users] < 3
    split[(from_end == 1) & ~short] = VAL
    split[(from_end == 0) & ~short] = TEST
    del from_end
    table = {**table, "split": split}
    n_short = int(((lengths > 0) & (lengths < 3)).sum())
    report["split"] = {
        "method": "loo",
        "short_users": n_short,
        "short_users_action": cfg.short_users,
        "short_user_rows": int(short.sum()),
    }
    if n_short:
        log.info(
            "%d user(s) have fewer than 3 interactions: %s (preprocess.short_users)",
            n_short,
            "kept in train only" if cfg.short_users == "train_only" else "dropped",
        )
    if cfg.short_users == "drop" and n_short:
        if short.all():
            raise ValueError(
                f"short_users='drop' removed every user: all {n_short} users have fewer "
                "than 3 interactions; use short_users: train_only or a ratio/time split"
            )
        table = _take(table, ~short)
    return table


def _time_split(table: Table, cfg: PreprocessConfig, report: dict) -> Table:
    stamps = table["timestamp"]
    if cfg.time_cutoffs is not None:
        val_start, test_start = cfg.time_cutoffs
    else:
        val_start, test_start = np.quantile(stamps, cfg.time_quantiles)
    split = np.full(len(stamps), TRAIN, dtype=np.int8)
    split[stamps >= val_start] = VAL
    split[stamps >= test_start] = TEST
    if not (split == TRAIN).any():
        raise ValueError(
            f"time split: no interaction is before val_start={val_start}; "
            "raise preprocess.time_cutoffs/time_quantiles"
        )
    users = table["user"]
    has_train = np.bincount(users[split == TRAIN], minlength=int(users.max()) + 1) > 0
    report["split"] = {
        "method": "time",
        "val_start": float(val_start),
        "test_start": float(test_start),
        "eval_rows_of_users_without_train": int(((split != TRAIN) & ~has_train[users]).sum()),
    }
    return {**table, "split": split}


def require_eval_rows(data: InteractionData, config: PreprocessConfig | Mapping[str, Any] | None) -> None:
    """Training validates and tests: a split that left no validation or test rows fails
    here, before a model is built and an epoch is trained, naming the history length
    the split needs. (Plain :func:`preprocess` allows it, e.g. for small update slices.)"""
    cfg = PreprocessConfig.of(config)
    if cfg.split == "given":
        return  # the files' own split (ncf_split may leave out validation on purpose)
    split = data.column("split")
    wanted = {"validation": (VAL, _wants_validation(cfg)), "test": (TEST, _wants_test(cfg))}
    empty = [name for name, (code, wants) in wanted.items() if wants and not (split == code).any()]
    if not empty:
        return
    lengths = np.bincount(data.column("user"))
    raise ValueError(
        f"preprocess.split={cfg.split!r} left no {' and no '.join(empty)} rows: {_split_needs(cfg)}; "
        f"the longest of the {int(np.count_nonzero(lengths))} users has {int(lengths.max())} "
        "interaction(s) after preprocessing. Check the data (and min_user_interactions/"
        "rating_threshold) or choose a split that fits it"
    )


def _wants_validation(cfg: PreprocessConfig) -> bool:
    if cfg.validation == "train":
        return False
    if cfg.split == "ratio":
        return cfg.ratios[1] > 0
    if cfg.split == "time":
        bounds = cfg.time_cutoffs if cfg.time_cutoffs is not None else cfg.time_quantiles
        return bounds[0] < bounds[1]
    return True


def _wants_test(cfg: PreprocessConfig) -> bool:
    return cfg.ratios[2] > 0 if cfg.split == "ratio" else True


def _split_needs(cfg: PreprocessConfig) -> str:
    """What a user (or the data) needs for the split to produce evaluation rows."""
    if cfg.split == "loo":
        return "leave-one-out needs users with at least 3 interactions (train, validation, test)"
    if cfg.split == "ratio":
        val, test = (_min_length(r) for r in cfg.ratios[1:])
        return (
            f"ratios={list(cfg.ratios)} give a user a validation row from {val} and a test row "
            f"from {test} interactions"
        )
    return "no interaction lies at or after the validation/test start; lower time_cutoffs/time_quantiles"


def _min_length(fraction: float) -> int | str:
    """Fewest interactions ``n`` with ``floor(n * fraction) >= 1`` (the ratio split's rule)."""
    if fraction <= 0:
        return "no number of"
    n = max(1, int(np.ceil(1 / fraction)) - 1)
    while np.floor(n * fraction) < 1:
        n += 1
    return n


def _remap(table: Table, user_raw: np.ndarray, item_raw: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Close the gaps filtering left in the codes: dense ids, still in raw-id order.

    The frame wraps the arrays without copying them (ids int32 while they fit)."""
    columns: dict[str, np.ndarray] = {}
    ids = {}
    for kind, raw_ids in (("user", user_raw), ("item", item_raw)):
        codes = table[kind]
        present = np.bincount(codes, minlength=len(raw_ids)) > 0
        if present.all():  # nothing was filtered: the codes are dense already
            columns[kind] = codes.astype(id_dtype(len(raw_ids)), copy=False)
            ids[kind] = raw_ids
            continue
        dense = (np.cumsum(present) - 1).astype(id_dtype(int(present.sum())))
        columns[kind] = dense[codes]
        ids[kind] = raw_ids[present]
    columns["timestamp"] = table["timestamp"]
    if "rating" in table:
        columns["rating"] = table["rating"].astype(np.float32, copy=False)
    columns["split"] = table["split"].astype(np.int8, copy=False)
    return pd.DataFrame(columns, copy=False), ids["user"], ids["item"]


def id_dtype(count: int) -> np.dtype:
    """The compact integer type for ``count`` dense ids: int32 while they fit."""
    return np.dtype(np.int32) if count <= np.iinfo(np.int32).max else np.dtype(np.int64)


def _align_features(
    features: pd.DataFrame | None, ids: np.ndarray, kind: str, report: dict
) -> pd.DataFrame | None:
    """Reindex raw-id features to internal ids; count ids without features and unused rows."""
    if features is None:
        return None
    if features.index.has_duplicates:
        dup = features.index[features.index.duplicated()][0]
        raise DataFormatError(f"{kind} features have duplicate {kind} id {dup!r}; ids must be unique")
    present = features.index.isin(ids)
    if len(ids) and len(features) and not present.any():
        raise DataFormatError(
            f"none of the {len(features)} {kind} feature rows matches a {kind} id (feature ids "
            f"like {features.index[0]!r}, data ids like {ids[0]!r}); the features file must use "
            f"the same {kind} ids as the interactions"
        )
    aligned = features.reindex(pd.Index(ids)).reset_index(drop=True)
    aligned.index.name = kind
    without = int(len(ids) - present.sum())
    report[f"{kind}_features"] = {
        "columns": list(features.columns),
        f"{kind}s_without_features": without,
        "unused_rows": int((~present).sum()),
    }
    if without:
        log.warning("%d %s(s) have no side features (filled with missing values)", without, kind)
    for column in aligned.columns:
        if _is_list_column(features[column]):
            missing = aligned[column].isna().to_numpy()
            if missing.any():
                values = aligned[column].to_numpy(dtype=object).copy()
                for index in np.flatnonzero(missing):  # only the few ids without features
                    values[index] = []
                aligned[column] = values
    return aligned


def _is_list_column(column: pd.Series) -> bool:
    return column.dtype == object and len(column) > 0 and isinstance(column.dropna().iloc[0], list)


def _encode(values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes in sorted raw-id order, and the raw ids they stand for.

    Non-negative integer ids of a moderate range take a counting pass (no hash table,
    no sort); others are factorized."""
    if values.dtype.kind in "iu" and len(values) and _countable(values):
        present = np.bincount(values) > 0
        dense = (np.cumsum(present) - 1).astype(id_dtype(int(present.sum())))
        return dense[values], np.flatnonzero(present).astype(np.int64)
    try:
        codes, uniques = pd.factorize(values, sort=True)
    except TypeError as exc:
        raise DataFormatError(
            f"{what} ids mix types that cannot be ordered ({exc}); make all {what} ids "
            "numbers or all strings"
        ) from None
    uniques = np.asarray(uniques)
    if uniques.dtype.kind in "iu":
        uniques = uniques.astype(np.int64)
    return codes.astype(id_dtype(len(uniques))), uniques


def _countable(values: np.ndarray) -> bool:
    """Ids ``0..max`` whose count table stays small next to the column itself."""
    low, high = int(values.min()), int(values.max())
    return low >= 0 and high <= 4 * len(values) + (1 << 20)


# The table steps, in order; each takes and returns the table and records what it did.
STEPS = (
    ("threshold", _apply_threshold),
    ("sort+dedup", _sort_and_dedup),
    ("k-core", _kcore),
    ("split", _split),
)
