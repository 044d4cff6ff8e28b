"""IdIndex: the one raw -> internal id lookup (sorted, aligned and request ids alike)."""
from __future__ import annotations

import numpy as np
import pytest

from data_modules.id_index import IdIndex, IdMapError


def test_lookup_finds_positions_in_an_unsorted_map_and_keeps_the_shape() -> None:
    index = IdIndex(np.array([30, 10, 20]), "item")  # aligned maps append, so not sorted
    assert index.lookup(np.array([10, 99, 30])).tolist() == [1, -1, 0]
    assert index.lookup(np.array([[20, 10], [5, 30]])).tolist() == [[2, 1], [-1, 0]]
    assert index.lookup(np.array([], dtype=np.int64)).shape == (0,)


def test_lookup_of_ids_of_another_type_finds_nothing() -> None:
    numbers = IdIndex(np.array([1, 2, 3]), "user")
    assert numbers.lookup(np.array(["1", "2"], dtype=object)).tolist() == [-1, -1]
    text = IdIndex(np.array(["1", "2"], dtype=object), "user")
    assert text.lookup(np.array([1, 2])).tolist() == [-1, -1]
    assert text.to_internal([1, "2"]).tolist() == [0, 1]  # requests are coerced first


def test_an_empty_map_knows_no_id() -> None:
    empty = IdIndex(np.array([], dtype=np.int64), "user")
    assert len(empty) == 0 and empty.to_internal([1, "2"]).tolist() == [-1, -1]


def test_a_map_listing_an_id_twice_is_refused() -> None:
    with pytest.raises(IdMapError, match="item id map lists 1 raw id"):
        IdIndex(np.array(["a", "b", "a"], dtype=object), "item")
