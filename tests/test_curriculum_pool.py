"""The sampler view: only allowed examples, all data at full competence, disjoint shards."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data_modules.batching import EpochBatchSampler
from data_modules.interactions import TEST, TRAIN, VAL, InteractionData
from data_modules.pairs import PairDataModule
from train.curriculum import Curriculum, SequenceLength, TargetPopularity
from train.curriculum.pool import allowed_pool, easiest_order, pool_size


def tiny_data(num_users: int = 30, num_items: int = 40, seed: int = 0) -> InteractionData:
    """Users with 4..15 distinct items, Zipf-ish item choice; last item test, second-last val."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_items + 1)
    rows = []
    for user in range(num_users):
        items = rng.choice(num_items, size=int(rng.integers(4, 16)), replace=False, p=weights / weights.sum())
        splits = [TRAIN] * (len(items) - 2) + [VAL, TEST]
        rows += [(user, int(item), t, split) for t, (item, split) in enumerate(zip(items, splits))]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"])
    return InteractionData(frame, np.arange(num_users), np.arange(num_items), name="tiny")


def pair_module(batch_size: int = 8, data: InteractionData | None = None) -> PairDataModule:
    return PairDataModule(data or tiny_data(), eval_spec=None, batch_size=batch_size, num_negatives=2, seed=3)


def test_pool_size_is_ceil_without_float_error() -> None:
    assert pool_size(0.3, 10) == 3  # 0.3 * 10 = 3.0000000000000004 in floating point
    assert pool_size(0.31, 10) == 4
    assert pool_size(1.0, 10) == 10
    assert pool_size(0.01, 10, minimum=2) == 2
    with pytest.raises(ValueError, match="competence"):
        pool_size(0.0, 10)


def test_allowed_pool_is_the_easiest_by_brute_force() -> None:
    difficulty = np.array([5.0, 1.0, 3.0, 1.0, 2.0, 9.0, 0.5])
    order = easiest_order(difficulty)
    for competence in (0.1, 0.3, 0.5, 0.7, 1.0):
        k = math.ceil(competence * len(difficulty) - 1e-9)
        # brute force: every allowed example is at most as hard as every excluded one
        pool = allowed_pool(order, competence)
        excluded = np.setdiff1d(np.arange(len(difficulty)), pool)
        assert len(pool) == k and np.all(np.diff(pool) > 0)
        if len(excluded):
            assert difficulty[pool].max() <= difficulty[excluded].min()
    np.testing.assert_array_equal(allowed_pool(order, 3 / 7), [1, 3, 6])  # ties kept in index order


def _epoch_indices(sampler: EpochBatchSampler) -> np.ndarray:
    return np.concatenate([key.indices for key in sampler])


def test_sampler_yields_only_allowed_and_covers_all_at_full_competence() -> None:
    module = pair_module()
    curriculum = Curriculum({"name": "linear", "start": 0.25, "ramp_steps": 40}, difficulty=TargetPopularity())
    curriculum.bind(module)
    module.set_train_pool(lambda: curriculum.epoch_pool(step, epoch))
    n = module.num_train_examples()
    # independent expectation: the ceil(c N) examples whose target item is the most popular
    counts = module.data.item_popularity()
    target_counts = counts[module.train_set.items]
    for epoch, step in enumerate((0, 20)):
        competence = 0.25 + 0.75 * step / 40
        seen = _epoch_indices(module.make_train_sampler())
        k = math.ceil(competence * n - 1e-9)
        assert len(seen) == k and len(np.unique(seen)) == k
        outside = np.setdiff1d(np.arange(n), seen)
        assert target_counts[seen].min() >= target_counts[outside].max()
        assert curriculum.active_fraction == pytest.approx(k / n)
    step, epoch = 40, 2
    full = module.make_train_sampler()
    assert full.allowed is None  # no restriction at c = 1: the baseline's own batches
    np.testing.assert_array_equal(np.sort(_epoch_indices(full)), np.arange(n))


def test_two_ranks_get_disjoint_shards_of_the_same_pool() -> None:
    shards, pools = [], []
    for rank in range(2):
        module = pair_module()
        module._rank_world = lambda rank=rank: (rank, 2)  # what a 2-process trainer reports
        curriculum = Curriculum({"name": "root", "start": 0.3, "ramp_steps": 100}, difficulty=SequenceLength())
        curriculum.bind(module, world_size=2)
        module.set_train_pool(lambda c=curriculum: c.epoch_pool(global_step=30, epoch=1))
        sampler = module.make_train_sampler()
        sampler.set_epoch(1)
        pools.append(sampler.allowed)
        shards.append(_epoch_indices(sampler))
    np.testing.assert_array_equal(pools[0], pools[1])  # same competence from the same global step
    assert len(np.intersect1d(shards[0], shards[1])) == 0
    assert len(shards[0]) == len(shards[1]) == len(pools[0]) // 2
    assert np.isin(np.concatenate(shards), pools[0]).all()
    lengths = module.train_set.users
    per_user = np.bincount(lengths)[lengths]  # pair "length" = the user's training history
    outside = np.setdiff1d(np.arange(len(lengths)), pools[0])
    assert per_user[pools[0]].max() <= per_user[outside].min()
