"""preprocess(): each step against hand-computed expectations."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_modules.id_index import IdIndex
from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.preprocessing import DataFormatError, PreprocessConfig, preprocess


def frame(rows, columns=("user", "item", "timestamp")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def pairs(data) -> set[tuple]:
    """(raw user, raw item) pairs kept, read back through the id maps."""
    inter = data.interactions
    return set(zip(data.user_ids[inter["user"]], data.item_ids[inter["item"]]))


def test_kcore_is_iterative():
    # Round 1 drops (u4,d) and (u1,c); then d has one row -> (u3,d) goes;
    # then u3 has one row -> (u3,a) goes. A single pass would keep u3.
    raw = frame(
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 1), ("u2", "b", 2),
         ("u3", "a", 1), ("u3", "d", 2), ("u4", "d", 1)]  # fmt: skip
    )
    data = preprocess(raw, {"min_user_interactions": 2, "min_item_interactions": 2})
    assert pairs(data) == {("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")}
    assert data.report["kcore"] == {"rounds": 4, "rows_removed": 4, "users_removed": 2, "items_removed": 2}
    assert list(data.user_ids) == ["u1", "u2"] and list(data.item_ids) == ["a", "b"]


def test_kcore_that_empties_everything_names_the_filter():
    raw = frame([(1, 1, 1), (1, 2, 2), (2, 1, 1)])
    with pytest.raises(ValueError, match="min_user_interactions=5.*lower"):
        preprocess(raw, {"min_user_interactions": 5})


def test_dedup_keeps_earliest_and_counts():
    raw = frame([(1, 5, 3), (1, 5, 1), (1, 6, 2), (2, 5, 7), (2, 5, 7), (2, 6, 8), (2, 7, 9)])
    data = preprocess(raw, {"dedup": True})
    assert data.report["duplicates_removed"] == 2
    user1 = data.interactions[data.interactions["user"] == 0]
    assert list(zip(data.item_ids[user1["item"]], user1["timestamp"])) == [(5, 1), (6, 2)]
    kept = preprocess(raw, {"dedup": False})
    assert len(kept.interactions) == 7 and kept.report["duplicates_removed"] == 0


def test_rating_threshold_keeps_ratings_at_or_above():
    raw = frame(
        [(1, 1, 1, 1.0), (1, 2, 2, 3.0), (1, 3, 3, 4.0), (1, 4, 4, 5.0), (1, 5, 5, 4.5)],
        ("user", "item", "timestamp", "rating"),
    )
    data = preprocess(raw, {"rating_threshold": 4})
    assert sorted(data.item_ids[data.interactions["item"]]) == [3, 4, 5]
    assert data.report["below_threshold_removed"] == 2
    assert data.interactions["rating"].dtype == np.float32
    with pytest.raises(ValueError, match=r"rating_threshold=6.*removed all 5.*1\.0\.\.5\.0"):
        preprocess(raw, {"rating_threshold": 6})
    with pytest.raises(DataFormatError, match="rating_threshold: null"):
        preprocess(raw.drop(columns="rating"), {"rating_threshold": 4})


def test_loo_split_sorts_by_time_with_stable_ties():
    # File order is shuffled; two rows share timestamp 5 and must keep file order (c then b).
    raw = frame([(7, "d", 9), (7, "c", 5), (7, "a", 1), (7, "b", 5), (7, "e", 12)])
    data = preprocess(raw)
    rows = data.interactions
    assert list(data.item_ids[rows["item"]]) == ["a", "c", "b", "d", "e"]
    assert list(rows["split"]) == [TRAIN, TRAIN, TRAIN, VAL, TEST]
    assert rows["split"].dtype == np.int8
    assert data.report["split_counts"] == {"train": 3, "val": 1, "test": 1}


@pytest.mark.parametrize("action", ["train_only", "drop"])
def test_short_users(action):
    raw = frame([(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 13, 1), (2, 10, 2), (3, 14, 5)])
    data = preprocess(raw, {"short_users": action})
    report = data.report["split"]
    assert report["short_users"] == 2 and report["short_user_rows"] == 3
    if action == "train_only":
        assert data.num_users == 3 and data.num_items == 5
        short = data.interactions[data.interactions["user"] > 0]
        assert (short["split"] == TRAIN).all()
    else:
        # Users 2 and 3 go, and with them items 13 and 14 that only they had.
        assert list(data.user_ids) == [1] and list(data.item_ids) == [10, 11, 12]
        assert list(data.interactions["split"]) == [TRAIN, VAL, TEST]


def test_drop_of_all_short_users_is_a_clear_error():
    with pytest.raises(ValueError, match="every user.*train_only"):
        preprocess(frame([(1, 1, 1), (2, 1, 1)]), {"short_users": "drop"})


def test_ratio_split_per_user_fractions():
    rows = [(1, i, i) for i in range(10)] + [(2, i, i) for i in range(5)]
    data = preprocess(frame(rows), {"split": "ratio", "ratios": [0.6, 0.2, 0.2]})
    split = data.interactions["split"].to_numpy()
    # User 1: 10 rows -> 6 train, 2 val, 2 test. User 2: 5 rows -> 3, 1, 1.
    assert list(split[:10]) == [TRAIN] * 6 + [VAL] * 2 + [TEST] * 2
    assert list(split[10:]) == [TRAIN] * 3 + [VAL] + [TEST]


def test_time_split_by_cutoffs_and_quantiles():
    raw = frame([(1, 1, 5), (1, 2, 10), (1, 3, 19), (2, 1, 20), (2, 4, 3)])
    data = preprocess(raw, {"split": "time", "time_cutoffs": [10, 20]})
    by_time = dict(zip(data.interactions["timestamp"], data.interactions["split"]))
    assert by_time == {3: TRAIN, 5: TRAIN, 10: VAL, 19: VAL, 20: TEST}
    quant = preprocess(raw, {"split": "time", "time_quantiles": [0.5, 0.75]})
    # Quantiles of [3, 5, 10, 19, 20]: 0.5 -> 10, 0.75 -> 19.
    assert quant.report["split"]["val_start"] == 10 and quant.report["split"]["test_start"] == 19
    with pytest.raises(ValueError, match="exactly one of time_cutoffs"):
        preprocess(raw, {"split": "time"})


def test_given_split_column():
    raw = frame(
        [(1, 1, 1, "train"), (1, 2, 2, "val"), (1, 3, 3, "test")], ("user", "item", "timestamp", "split")
    )
    data = preprocess(raw, {"split": "given"})
    assert list(data.interactions["split"]) == [TRAIN, VAL, TEST]
    with pytest.raises(DataFormatError, match="outside"):
        preprocess(raw.assign(split=["train", "valid", "test"]), {"split": "given"})


def test_dense_ids_follow_sorted_raw_ids():
    raw = frame([(30, 7, 1), (10, 9, 1), (20, 7, 2), (10, 3, 2)])
    data = preprocess(raw)
    assert list(data.user_ids) == [10, 20, 30] and list(data.item_ids) == [3, 7, 9]
    inter = data.interactions
    assert list(inter["user"]) == [0, 0, 1, 2]
    assert list(data.item_ids[inter["item"]]) == [9, 3, 7, 7]
    assert list(IdIndex(data.item_ids, "item").lookup(np.array([9, 4, 3]))) == [2, -1, 0]


def test_features_are_aligned_to_internal_ids():
    raw = frame([(1, "x", 1), (1, "y", 2), (2, "z", 1)])
    items = pd.DataFrame(
        {"genres": [["A"], ["B", "C"], ["D"]], "year": [1990, 2000, 1980]}, index=["y", "x", "unused"]
    )
    data = preprocess(raw, item_features=items)
    feats = data.item_features
    assert list(feats.index) == [0, 1, 2]
    assert feats.loc[0, "genres"] == ["B", "C"] and feats.loc[1, "genres"] == ["A"]
    assert feats.loc[2, "genres"] == []  # "z" has no features: empty list, not NaN
    assert np.isnan(feats.loc[2, "year"])
    assert data.report["item_features"]["items_without_features"] == 1
    assert data.report["item_features"]["unused_rows"] == 1


def test_missing_values_and_columns_are_rejected():
    with pytest.raises(DataFormatError, match=r"lacks column\(s\) \['item'\]"):
        preprocess(pd.DataFrame({"user": [1]}))
    with pytest.raises(DataFormatError, match="missing 'user'"):
        preprocess(frame([(None, 1, 1), (1, 2, 2)]))


def test_config_validation():
    with pytest.raises(ValueError, match="unknown preprocess option"):
        PreprocessConfig.of({"min_users": 3})
    with pytest.raises(ValueError, match="split='leave_one_out' is unknown"):
        PreprocessConfig.of({"split": "leave_one_out"})
    with pytest.raises(ValueError, match="summing to 1"):
        PreprocessConfig.of({"ratios": [0.5, 0.2, 0.2]})
    assert PreprocessConfig.of({"ratios": [0.8, 0.1, 0.1]}) == PreprocessConfig()


def test_features_in_another_id_space_are_rejected():
    raw = frame([(1, 1, 1), (1, 2, 2)])
    items = pd.DataFrame({"year": [1990, 1991]}, index=[1001, 1002])
    with pytest.raises(DataFormatError, match="same item ids"):
        preprocess(raw, item_features=items)
