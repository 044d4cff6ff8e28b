"""Aligning new data with a previous id map: old raw ids keep their ids, new ones append."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_modules.alignment import IdMapError, align_data, align_ids
from data_modules.interactions import TEST, TRAIN
from data_modules.preprocessing import preprocess
from train.serving import IdIndex


def raw(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


def test_align_ids_keeps_previous_positions_and_appends_unseen() -> None:
    previous = np.array(["b", "d", "a"], dtype=object)  # an already aligned, unsorted map
    current = np.array(["a", "c", "d", "e"], dtype=object)
    aligned = align_ids(previous, current, "user")
    assert aligned.ids.tolist() == ["b", "d", "a", "c", "e"]
    assert aligned.remap.tolist() == [2, 3, 1, 4]  # a->2, c->3 (new), d->1, e->4 (new)
    assert aligned.num_previous == 3 and aligned.num_appended == 2


def test_aligned_data_keeps_every_row_and_old_internal_ids() -> None:
    old = preprocess(raw([("u1", 10, 1), ("u2", 11, 2), ("u3", 12, 3), ("u3", 10, 4)]), {"split": "ratio"})
    new = preprocess(
        raw([("u0", 13, 5), ("u2", 10, 6), ("u2", 13, 7), ("u3", 12, 8), ("u4", 11, 9), ("u0", 11, 10), ("u0", 12, 11)]),
        {"split": "loo"},
    )
    data = align_data(new, old.user_ids, old.item_ids)
    # Old raw ids keep their internal ids; new ones come after, in the new data's order.
    assert data.user_ids.tolist() == ["u1", "u2", "u3", "u0", "u4"]
    assert data.item_ids.tolist() == [10, 11, 12, 13]
    # The same (raw user, raw item, time, split) rows, now sorted by (user, time).
    frame = data.interactions
    got = list(zip(data.user_ids[frame["user"]], data.item_ids[frame["item"]], frame["timestamp"], frame["split"]))
    before = new.interactions
    want = list(zip(new.user_ids[before["user"]], new.item_ids[before["item"]], before["timestamp"], before["split"]))
    assert sorted(got, key=str) == sorted(want, key=str)
    assert frame["user"].tolist() == sorted(frame["user"].tolist())
    for _, rows in frame.groupby("user"):
        assert rows["timestamp"].is_monotonic_increasing
    report = data.report["alignment"]
    assert report == {
        "previous_users": 3, "previous_items": 3, "new_users": 2, "new_items": 1,
        "previous_users_without_interactions": 1, "previous_items_without_interactions": 0,
    }
    # u0's last row (raw item 12 at t=11) is its test target, under its appended id 3.
    users, items = data.targets(TEST)
    assert list(zip(users.tolist(), items.tolist())) == [(3, 2)]
    assert data.histories(TRAIN).of(0).size == 0  # u1 has no new interactions
    # Serving looks raw ids up in the aligned (unsorted) map.
    assert IdIndex(data.user_ids, "user").to_internal(["u0", "u4", "u1", "zz"]).tolist() == [3, 4, 0, -1]


def test_features_and_given_negatives_follow_their_ids() -> None:
    old = preprocess(raw([(5, 1, 1), (6, 2, 2)]))
    items = pd.DataFrame({"year": [2001, 2002, 2003]}, index=pd.Index([1, 2, 3], name="item"))
    new = preprocess(raw([(4, 3, 1), (6, 2, 2), (6, 3, 3), (6, 1, 4)]), item_features=items)
    new.eval_negatives = {"test": np.array([[0, 1], [2, 0]])}  # rows: raw users 4, 6
    data = align_data(new, old.user_ids, old.item_ids)
    assert data.item_ids.tolist() == [1, 2, 3] and data.user_ids.tolist() == [5, 6, 4]
    assert data.item_features["year"].tolist() == [2001, 2002, 2003]
    # raw user 4 (now id 2) had raw items [1, 2] -> aligned [0, 1]; raw user 6 had [3, 1] -> [2, 0].
    negatives = data.eval_negatives["test"]
    assert negatives.shape == (3, 2)
    assert negatives[2].tolist() == [0, 1] and negatives[1].tolist() == [2, 0]


def test_conflicting_id_types_are_refused() -> None:
    with pytest.raises(IdMapError, match="user ids of the previous run are integer.*new data's are string"):
        align_ids(np.array([1, 2, 3]), np.array(["1", "2"], dtype=object), "user")


def test_a_damaged_previous_map_is_refused() -> None:
    with pytest.raises(IdMapError, match="twice"):
        align_ids(np.array([1, 2, 2]), np.array([1]), "item")
