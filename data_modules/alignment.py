"""Re-index new data against a previous id map, so a trained model can be continued.

Preprocessing numbers ids ``0..n-1`` in sorted raw-id order, so data with one extra user
would shift every later user's internal id and scramble a trained embedding table.
Aligning fixes that: every raw id of the previous map keeps its internal id (its row),
raw ids the previous map lacks are appended after it (in the new data's order), and ids
the previous map has but the new data lacks keep their rows (they simply have no
interactions now). The aligned maps are therefore no longer sorted; lookups go through
:class:`~data_modules.id_index.IdIndex`, which does not assume sorted maps.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_modules.id_index import IdIndex, IdMapError, check_unique
from data_modules.interactions import InteractionData
from data_modules.preprocessing import _align_features

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignedIds:
    """``ids`` = previous map + appended new raw ids; ``remap[j]`` = aligned id of the new
    data's internal id ``j``."""

    ids: np.ndarray
    remap: np.ndarray
    num_previous: int

    @property
    def num_appended(self) -> int:
        return len(self.ids) - self.num_previous


def id_kind(ids: np.ndarray) -> str:
    """``integer``, ``floating``, ``string`` ... as pandas infers it (``empty`` for none)."""
    return pd.api.types.infer_dtype(ids, skipna=False)


def align_ids(previous: np.ndarray, current: np.ndarray, kind: str) -> AlignedIds:
    """Previous raw ids keep their positions; ``current``'s other ids are appended."""
    previous, current = np.asarray(previous), np.asarray(current)
    _check_kinds(previous, current, kind)
    index = IdIndex(previous, f"previous {kind}")
    check_unique(current, f"new {kind} id map")
    remap = index.lookup(current)  # -1 where the id is new
    unseen = remap < 0
    remap[unseen] = len(previous) + np.arange(int(unseen.sum()))
    ids = np.concatenate([previous, current[unseen]]) if unseen.any() else previous.copy()
    return AlignedIds(ids=ids, remap=remap, num_previous=len(previous))


def _check_kinds(previous: np.ndarray, current: np.ndarray, kind: str) -> None:
    old, new = id_kind(previous), id_kind(current)
    if "empty" in (old, new) or old == new:
        return
    raise IdMapError(
        f"{kind} ids of the previous run are {old} (e.g. {previous[0]!r}) but the new data's are "
        f"{new} (e.g. {current[0]!r}): the same {kind} would get two ids. Load the new data so "
        f"that its {kind} ids have the previous type (e.g. the same loader and columns)"
    )


def align_data(data: InteractionData, user_ids: np.ndarray, item_ids: np.ndarray) -> InteractionData:
    """``data`` re-indexed so that ``user_ids``/``item_ids`` (a previous run's maps) keep
    their internal ids; interactions are re-sorted by (user, time) as the contract wants."""
    users = align_ids(user_ids, data.user_ids, "user")
    items = align_ids(item_ids, data.item_ids, "item")
    frame = data.interactions.copy()
    frame["user"] = users.remap[frame["user"].to_numpy()]
    frame["item"] = items.remap[frame["item"].to_numpy()]
    # Each user's rows are contiguous and chronological: a stable sort by the new user id
    # keeps that order within users.
    order = np.argsort(frame["user"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    report = dict(data.report)
    report["alignment"] = _alignment_report(users, items, data)
    log.info(
        "aligned ids with the previous run: %d new user(s) and %d new item(s) appended",
        users.num_appended, items.num_appended,
    )
    return InteractionData(
        interactions=frame,
        user_ids=users.ids,
        item_ids=items.ids,
        name=data.name,
        eval_negatives=_aligned_negatives(data, users, items),
        item_features=_aligned_features(data.item_features, data.item_ids, items.ids, "item", report),
        user_features=_aligned_features(data.user_features, data.user_ids, users.ids, "user", report),
        report=report,
    )


def _alignment_report(users: AlignedIds, items: AlignedIds, data: InteractionData) -> dict[str, int]:
    present_users = np.unique(users.remap[data.interactions["user"].to_numpy()])
    present_items = np.unique(items.remap[data.interactions["item"].to_numpy()])
    return {
        "previous_users": users.num_previous,
        "previous_items": items.num_previous,
        "new_users": users.num_appended,
        "new_items": items.num_appended,
        "previous_users_without_interactions": int(users.num_previous - (present_users < users.num_previous).sum()),
        "previous_items_without_interactions": int(items.num_previous - (present_items < items.num_previous).sum()),
    }


def _aligned_negatives(
    data: InteractionData, users: AlignedIds, items: AlignedIds
) -> dict[str, np.ndarray]:
    """Given candidates are ``[num_users, N]`` tables indexed by user: move each row to
    its aligned user and translate its items. Previous users absent from the new data
    have no evaluation rows; their rows hold item 0 so the table stays valid."""
    out = {}
    for split, table in data.eval_negatives.items():
        table = np.asarray(table)
        aligned = np.zeros((len(users.ids), table.shape[1]), dtype=np.int64)
        aligned[users.remap] = items.remap[table]
        out[split] = aligned
    return out


def _aligned_features(
    features: pd.DataFrame | None, old_internal: np.ndarray, aligned: np.ndarray, kind: str, report: dict
) -> pd.DataFrame | None:
    """The new data's features re-indexed to the aligned ids; previous ids without new
    interactions have no features here (counted in ``report``)."""
    if features is None:
        return None
    by_raw = features.copy()
    by_raw.index = pd.Index(old_internal[features.index.to_numpy()])
    return _align_features(by_raw, aligned, kind, report)
