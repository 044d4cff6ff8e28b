"""Feature tables -> arrays: kinds, vocabularies, padding, standardisation, text files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_modules import cache
from data_modules.features import (
    align_text_embeddings,
    detect_kind,
    encode_features,
    encode_table,
    read_text_embeddings,
)
from data_modules.preprocessing import DataFormatError, preprocess


def item_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "genres": pd.Series([["Drama", "Action"], [], None, ["Action"], ["Comedy", "Drama", "War"]], dtype=object),
            "year": pd.array([1990, 2000, None, 2010, 1990], dtype="Int64"),
            "rating": [3.5, 4.0, 2.5, np.nan, 4.5],
            "code": pd.array([7, 3, 7, None, 3], dtype="Int64"),
            "movie_id": pd.array([11, 12, 13, 14, 15] * 1, dtype="Int64"),
            "title": ["a", "b", "c", "d", "e"],
            "flag": [True, False, True, True, False],
        }
    )


def test_detect_kind_follows_the_documented_rules() -> None:
    frame = item_table()
    assert detect_kind(frame["genres"])[0] == "multi"
    assert detect_kind(frame["year"])[0] == "categorical"  # 3 distinct integers: codes
    assert detect_kind(pd.Series(np.arange(100) % 40 + 1950))[0] == "numeric"
    assert detect_kind(pd.Series(np.arange(100)))[0] is None  # identifier
    assert detect_kind(frame["rating"])[0] == "numeric"
    assert detect_kind(frame["flag"])[0] == "categorical"
    assert detect_kind(pd.Series([f"t{i}" for i in range(100)]))[0] is None  # free text
    assert detect_kind(pd.Series(["M", "F"] * 50))[0] == "categorical"
    assert detect_kind(pd.Series([None, None], dtype=object))[0] is None


def test_multi_valued_codes_are_sorted_and_padded_with_minus_one() -> None:
    arrays, report = encode_table(item_table(), ["genres"])
    assert arrays.vocabularies["genres"] == ["Action", "Comedy", "Drama", "War"]
    expected = np.array([[2, 0, -1], [-1, -1, -1], [-1, -1, -1], [0, -1, -1], [1, 2, 3]])
    np.testing.assert_array_equal(arrays.categorical["genres"], expected)
    assert arrays.categorical["genres"].dtype == np.int64
    assert arrays.multi_valued == {"genres": True} and arrays.cardinalities == {"genres": 4}
    assert report["used"]["genres"]["missing"] == 2


def test_categorical_codes_and_numeric_standardisation_by_hand() -> None:
    arrays, report = encode_table(item_table(), ["code", "rating"], kinds={})
    np.testing.assert_array_equal(arrays.categorical["code"], [1, 0, 1, -1, 0])
    assert arrays.vocabularies["code"] == ["3", "7"]
    known = np.array([3.5, 4.0, 2.5, 4.5])
    expected = np.array([3.5, 4.0, 2.5, known.mean(), 4.5])
    expected = (expected - known.mean()) / known.std()
    np.testing.assert_array_equal(arrays.numeric[:, 0], expected.astype(np.float32))
    assert arrays.numeric.dtype == np.float32
    assert arrays.numeric_names == ["rating"] and report["used"]["rating"]["missing"] == 1


def test_all_skips_identifiers_and_free_text_with_reasons_but_explicit_names_encode() -> None:
    frame = pd.concat([item_table()] * 20, ignore_index=True)
    frame["movie_id"] = pd.array(np.arange(len(frame)), dtype="Int64")
    frame["title"] = [f"title {i}" for i in range(len(frame))]
    arrays, report = encode_table(frame)
    assert set(report["skipped"]) == {"movie_id", "title"}
    assert "identifier" in report["skipped"]["movie_id"] and "free text" in report["skipped"]["title"]
    assert sorted(arrays.categorical) == ["code", "flag", "genres", "year"]
    assert arrays.numeric_names == ["rating"]
    explicit, _ = encode_table(frame, ["title"])
    assert explicit.cardinalities["title"] == len(frame)


def test_feature_kinds_override_detection() -> None:
    arrays, _ = encode_table(item_table(), ["year"], kinds={"year": "numeric"})
    assert arrays.categorical == {} and arrays.numeric_names == ["year"]
    with pytest.raises(ValueError, match="cannot be 'multi'"):
        encode_table(item_table(), ["year"], kinds={"year": "multi"})


# --- a whole data set --------------------------------------------------------------------


def tiny_data():
    raw = pd.DataFrame({"user": [10, 10, 10, 20, 20, 20], "item": [5, 6, 7, 7, 8, 5], "timestamp": range(6)})
    items = pd.DataFrame(
        {"genres": [["x"], ["y"], ["x", "y"], []], "year": [1990, 1991, 1992, 1993]},
        index=pd.Index([5, 6, 7, 8], name="item"),
    )
    users = pd.DataFrame({"gender": ["F", "M"], "year": [1970, 1980]}, index=pd.Index([10, 20], name="user"))
    return preprocess(raw, {"split": "loo"}, item_features=items, user_features=users)


def test_use_features_selects_columns_in_both_tables() -> None:
    data = tiny_data()
    items, users, _ = encode_features(data, use=["genres", "gender"])
    assert items.names == ["genres"] and users.names == ["gender"]
    items, users, _ = encode_features(data, use=["year"])  # in both tables: used in both
    assert items.names == ["year"] and users.names == ["year"]
    items, users, _ = encode_features(data, use="none")
    assert items is None and users is None
    with pytest.raises(ValueError, match="occupation"):
        encode_features(data, use=["occupation"])
    with pytest.raises(ValueError, match="gender"):  # the model takes no user features
        encode_features(data, use=["gender"], users=False)
    with pytest.raises(ValueError, match="feature_kinds"):
        encode_features(data, kinds={"year": "ordinal"})


def test_encoding_is_identical_after_a_cache_round_trip(tmp_path) -> None:
    data = tiny_data()
    cache.save(data, tmp_path / "entry")
    again = cache.load(tmp_path / "entry")
    for a, b in zip(encode_features(data)[:2], encode_features(again)[:2]):
        assert a.names == b.names and a.vocabularies == b.vocabularies
        for name in a.categorical:
            np.testing.assert_array_equal(a.categorical[name], b.categorical[name])
        np.testing.assert_array_equal(a.numeric, b.numeric)


# --- text embeddings ---------------------------------------------------------------------


def test_text_embeddings_align_by_raw_id_in_every_file_format(tmp_path) -> None:
    data = tiny_data()  # raw items 5, 6, 7, 8 -> internal 0..3
    ids = np.array([8, 5, 99])  # item 6 and 7 missing, 99 unknown
    vectors = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    np.save(tmp_path / "t.npy", np.column_stack([ids, vectors]))
    np.savez(tmp_path / "t.npz", ids=ids, embeddings=vectors)
    pd.DataFrame({"item": ids, "embedding": list(vectors)}).to_parquet(tmp_path / "t.parquet")
    pd.DataFrame({"item": ids, "d0": vectors[:, 0], "d1": vectors[:, 1]}).to_parquet(tmp_path / "w.parquet")
    expected = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, 0.0], [1.0, 2.0]], dtype=np.float32)
    for name in ("t.npy", "t.npz", "t.parquet", "w.parquet"):
        items, _, report = encode_features(data, use="none", item_text_embeddings=tmp_path / name)
        np.testing.assert_array_equal(items.numeric, expected)
        assert items.numeric_names == ["text", "text"] and items.categorical == {}
        assert report["text"] == {"items_without_text": 2, "unused_rows": 1}
    items, _, _ = encode_features(
        data, use=["year"], kinds={"year": "numeric"}, item_text_embeddings=tmp_path / "t.npz"
    )
    assert items.numeric_names == ["year", "text", "text"] and items.names == ["year", "text"]


def test_text_embedding_errors_name_the_problem(tmp_path) -> None:
    item_ids = np.array([5, 6])
    with pytest.raises(DataFormatError, match="twice"):
        align_text_embeddings(np.array([5, 5]), np.zeros((2, 3)), item_ids)
    with pytest.raises(DataFormatError, match="none of its"):
        align_text_embeddings(np.array([1, 2]), np.zeros((2, 3)), item_ids)
    np.save(tmp_path / "flat.npy", np.zeros(4))
    with pytest.raises(DataFormatError, match="column 0"):
        read_text_embeddings(tmp_path / "flat.npy")
    with pytest.raises(FileNotFoundError, match="item_text_embeddings"):
        read_text_embeddings(tmp_path / "missing.npy")
