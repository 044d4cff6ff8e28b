"""Negative sampling and batch sharding."""
from __future__ import annotations

import numpy as np
import pytest

from data_modules.batching import BatchKey, EpochBatchSampler
from data_modules.negatives import NegativeSampler
from data_modules.pairs import PairTrainingSet


def _toy_interactions(num_users: int = 50, num_items: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(num_users):
        chosen = rng.choice(num_items, size=rng.integers(1, num_items - 3), replace=False)
        users += [u] * len(chosen)
        items += list(chosen)
    return np.array(users), np.array(items), num_items


def test_negatives_never_known_items() -> None:
    users, items, num_items = _toy_interactions()
    sampler = NegativeSampler(users, items, num_items)
    known = set(zip(users.tolist(), items.tolist()))
    draw_users = np.repeat(np.arange(50), 20)
    negatives = sampler.sample(draw_users, 5, np.random.default_rng(1))
    assert negatives.shape == (1000, 5)
    for u, row in zip(draw_users, negatives):
        assert not any((int(u), int(i)) in known for i in row)


def test_popularity_proposal_is_followed() -> None:
    num_items = 10
    sampler = NegativeSampler(np.array([0]), np.array([0]), num_items, probs=np.arange(num_items, dtype=float))
    draws = sampler.sample(np.ones(20000, dtype=int), 1, np.random.default_rng(0)).ravel()
    freq = np.bincount(draws, minlength=num_items) / len(draws)
    np.testing.assert_allclose(freq, np.arange(num_items) / 45, atol=0.01)


def test_user_who_knows_everything_is_an_error() -> None:
    with pytest.raises(ValueError, match="all 3 items"):
        NegativeSampler(np.array([0, 0, 0]), np.array([0, 1, 2]), 3)


def test_shards_disjoint_equal_and_deterministic() -> None:
    shards = []
    for rank in range(3):
        sampler = EpochBatchSampler(101, 8, shuffle=True, seed=5, rank=rank, world_size=3)
        sampler.set_epoch(2)
        shards.append(np.concatenate([k.indices for k in sampler]))
        assert len(list(sampler)) == len(sampler)
    assert {len(s) for s in shards} == {33}
    assert len(np.unique(np.concatenate(shards))) == 99
    again = EpochBatchSampler(101, 8, shuffle=True, seed=5, rank=1, world_size=3)
    again.set_epoch(2)
    np.testing.assert_array_equal(np.concatenate([k.indices for k in again]), shards[1])
    again.set_epoch(3)
    assert not np.array_equal(np.concatenate([k.indices for k in again]), shards[1])


def test_pair_batches_resample_negatives_per_epoch() -> None:
    users, items, num_items = _toy_interactions()
    data = PairTrainingSet(users, items, num_items, num_negatives=3)
    idx = np.arange(16)
    first = data[BatchKey(0, 0, idx, 0)]
    assert first["label"].sum() == 16 and len(first["label"]) == 64
    np.testing.assert_array_equal(first["item"][:16].numpy(), items[:16])
    same = data[BatchKey(0, 0, idx, 0)]
    later = data[BatchKey(1, 0, idx, 0)]
    assert (first["item"] == same["item"]).all()
    assert not (first["item"][16:] == later["item"][16:]).all()


def test_known_pairs_is_one_membership_for_training_and_evaluation() -> None:
    from data_modules.eval_candidates import known_keys
    from data_modules.known_pairs import KnownPairs
    from test_eval_support import random_data

    data = random_data(num_users=30, num_items=25, min_len=3, max_len=12, seed=4)
    frame = data.interactions
    users, items = frame["user"].to_numpy(), frame["item"].to_numpy()
    known = KnownPairs(users, items, data.num_items)
    np.testing.assert_array_equal(known_keys(data), known.keys)
    grid_users, grid_items = np.divmod(np.arange(data.num_users * data.num_items), data.num_items)
    expected = {(int(u), int(i)) for u, i in zip(users, items)}
    got = known.contains(grid_users, grid_items)
    assert {(int(u), int(i)) for u, i in zip(grid_users[got], grid_items[got])} == expected
    sampler = NegativeSampler(users, items, data.num_items)
    np.testing.assert_array_equal(sampler.is_known(grid_users, grid_items), got)
    assert not KnownPairs(np.zeros(0, int), np.zeros(0, int), 5).contains(np.array([0, 1]), np.array([2, 3])).any()
