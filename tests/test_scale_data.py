"""Generated scale data: exact sizes, determinism, Zipf popularity, and both written
formats load through the real sources as the interactions that were generated."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.scale_generator import ScaleSpec, blocks, preset, user_lengths, write
from data_modules.sources import sequence_file, tabular

SMALL = ScaleSpec(num_users=300, num_items=2_000, num_interactions=20_000, min_length=5, seed=3)


def generated(spec: ScaleSpec, chunk_rows: int = 4_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = list(blocks(spec, chunk_rows))
    return tuple(np.concatenate([getattr(b, f) for b in parts]) for f in ("users", "items", "timestamps"))


def test_sizes_are_exact_and_every_user_has_the_minimum() -> None:
    users, items, stamps = generated(SMALL)
    assert len(users) == SMALL.num_interactions
    lengths = np.bincount(users, minlength=SMALL.num_users + 1)[1:]
    assert lengths.min() >= SMALL.min_length and len(lengths) == SMALL.num_users
    np.testing.assert_array_equal(lengths, user_lengths(SMALL))
    assert items.min() >= 1 and items.max() <= SMALL.num_items
    assert np.all(np.diff(users) >= 0)  # grouped by user
    same_user = users[1:] == users[:-1]
    assert np.all(np.diff(stamps)[same_user] > 0)  # each history in time order
    assert lengths.max() > 5 * np.median(lengths)  # heavy-tailed


def test_same_seed_same_data_other_seed_other_items() -> None:
    first, again = generated(SMALL), generated(SMALL)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    other = generated(ScaleSpec(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(first[1], other[1])


def test_item_popularity_follows_the_zipf_exponent() -> None:
    spec = ScaleSpec(num_users=2_000, num_items=20_000, num_interactions=200_000, zipf_exponent=1.1, seed=0)
    _, items, _ = generated(spec, chunk_rows=50_000)
    counts = np.sort(np.bincount(items))[::-1]
    ranks = np.arange(1, 201)  # the head, where every count is large enough to fit
    slope = np.polyfit(np.log(ranks), np.log(counts[:200]), 1)[0]
    assert slope == pytest.approx(-1.1, abs=0.1)


def test_without_repeats_users_rarely_hold_an_item_twice() -> None:
    spec = preset("ml20m", num_users=200, num_items=3_000, num_interactions=20_000)
    users, items, _ = generated(spec)
    pairs = users.astype(np.int64) * (spec.num_items + 1) + items
    assert len(np.unique(pairs)) >= 0.999 * len(pairs)


def test_a_spec_that_cannot_give_the_minimum_names_the_fix() -> None:
    with pytest.raises(ValueError, match="raise num_interactions"):
        ScaleSpec(num_users=100, num_items=10, num_interactions=99, min_length=1)


@pytest.mark.parametrize("fmt", ["parquet", "sequence"])
def test_written_files_load_through_the_sources_as_generated(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / ("set.parquet" if fmt == "parquet" else "set.txt")
    summary = write(SMALL, path, fmt, chunk_rows=3_000)  # several blocks
    assert summary["rows"] == SMALL.num_interactions
    load = tabular if fmt == "parquet" else sequence_file
    data = load(path, cache=False, preprocess={"dedup": False})
    users, items, _ = generated(SMALL, chunk_rows=3_000)
    np.testing.assert_array_equal(data.user_ids, np.arange(1, SMALL.num_users + 1))
    raw_users = data.user_ids[data.column("user")]
    raw_items = data.item_ids[data.column("item")]
    np.testing.assert_array_equal(raw_users, users)
    np.testing.assert_array_equal(raw_items, items)
    split = data.column("split")
    assert (split == TEST).sum() == (split == VAL).sum() == SMALL.num_users and (split == TRAIN).any()
