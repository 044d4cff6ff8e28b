"""Negative candidates: exclusion of the whole history, determinism, weights, given lists."""
from __future__ import annotations

import numpy as np
import pytest
from test_eval_support import make_data, random_data

from data_modules.interactions import TEST, VAL
from data_modules.eval_candidates import sample_negatives, split_candidates


def _chi_square(observed: np.ndarray, expected: np.ndarray) -> float:
    nz = expected > 0
    assert observed[~nz].sum() == 0, "drew an item with zero probability"
    return float(((observed[nz] - expected[nz]) ** 2 / expected[nz]).sum())


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
@pytest.mark.parametrize("split", [VAL, TEST])
def test_negatives_exclude_whole_history_and_are_distinct(sampler, split) -> None:
    data = random_data(num_users=60, num_items=40, min_len=3, max_len=25, seed=1)
    cands = split_candidates(data, split, sampler, num_negatives=10, seed=7)
    users, targets = data.targets(split)
    assert cands.shape == (len(users), 11)
    assert (cands[:, 0] == targets).all()
    pop = data.item_popularity()
    frame = data.interactions
    for u, row in zip(users, cands):
        seen = set(frame.loc[frame["user"] == u, "item"].tolist())  # train + val + test
        negatives = row[1:].tolist()
        assert len(set(negatives)) == 10
        assert not seen & set(negatives)
        if sampler == "popularity":
            assert (pop[negatives] > 0).all()


def test_sampling_is_deterministic_per_seed_and_split() -> None:
    data = random_data(num_users=50, num_items=60, min_len=3, max_len=20, seed=2)
    a = split_candidates(data, TEST, "uniform", 8, seed=3)
    b = split_candidates(data, TEST, "uniform", 8, seed=3)
    c = split_candidates(data, TEST, "uniform", 8, seed=4)
    d = split_candidates(data, VAL, "uniform", 8, seed=3)
    np.testing.assert_array_equal(a, b)
    assert (a[:, 1:] != c[:, 1:]).any()
    assert (a[:, 1:] != d[:, 1:]).any()


def test_popularity_draws_follow_weights_outside_history() -> None:
    num_items = 50
    weights = np.arange(num_items, dtype=np.int64) % 7  # includes zero weights
    known = np.arange(10, dtype=np.int64)  # user 0 has seen items 0..9
    users = np.zeros(20000, dtype=np.int64)
    draws = sample_negatives(users, known, weights, 1, np.random.default_rng(0), num_users=1)
    allowed = weights.astype(float)
    allowed[:10] = 0
    expected = allowed / allowed.sum() * len(users)
    observed = np.bincount(draws[:, 0], minlength=num_items)
    # 33 non-zero cells -> 32 degrees of freedom; 80 is far in the tail (p < 1e-5).
    assert _chi_square(observed, expected) < 80


def test_exact_path_for_users_who_saw_almost_everything() -> None:
    num_items = 100
    known = np.arange(96, dtype=np.int64)  # pool of 4: too small to oversample cheaply
    users = np.zeros(8000, dtype=np.int64)
    weights = np.ones(num_items, dtype=np.int64)
    draws = sample_negatives(users, known, weights, 1, np.random.default_rng(1), num_users=1)
    observed = np.bincount(draws[:, 0], minlength=num_items)
    expected = np.r_[np.zeros(96), np.full(4, 2000.0)]
    assert _chi_square(observed, expected) < 25  # 3 degrees of freedom
    full = sample_negatives(users[:50], known, weights, 4, np.random.default_rng(2), num_users=1)
    assert all(sorted(row) == [96, 97, 98, 99] for row in full.tolist())


def test_pool_exactly_n_and_too_small_pool_errors() -> None:
    seqs = [list(range(25)), [0, 1, 2]]
    data = make_data(seqs, num_items=30)
    cands = split_candidates(data, TEST, "uniform", 5, seed=0)
    assert sorted(cands[0, 1:].tolist()) == [25, 26, 27, 28, 29]
    with pytest.raises(ValueError, match=r"1 of 2 evaluated rows have fewer than 6 .*user 0 has only 5"):
        split_candidates(data, TEST, "uniform", 6, seed=0)


def test_mixed_rows_refill_to_exactly_n() -> None:
    """Heavy and light users in one call: every row gets N distinct allowed items."""
    rng = np.random.default_rng(4)
    num_items, n = 300, 40
    histories = [rng.choice(num_items, size=s, replace=False) for s in (5, 150, 250, 255, 10, 200)]
    known = np.unique(np.concatenate([u * num_items + h for u, h in enumerate(histories)]))
    users = np.tile(np.arange(6), 30)
    weights = rng.integers(1, 20, num_items)
    out = sample_negatives(users, known, weights, n, np.random.default_rng(0), num_users=6)
    for u, row in zip(users, out):
        assert len(set(row.tolist())) == n and (row >= 0).all()
        assert not set(row.tolist()) & set(histories[u].tolist())


def test_given_negatives_rows_follow_user_ids() -> None:
    table = np.array([[5, 6], [7, 8], [4, 9]])
    data = make_data([[0, 1, 2], [1, 2, 3], [3, 2, 1]], num_items=10, eval_negatives={"test": table})
    cands = split_candidates(data, TEST, "given", num_negatives=100, seed=0)
    np.testing.assert_array_equal(cands, [[2, 5, 6], [3, 7, 8], [1, 4, 9]])
    with pytest.raises(ValueError, match="no given negatives for split 'val'"):
        split_candidates(data, VAL, "given", 100, seed=0)


@pytest.mark.parametrize(
    ("table", "message"),
    [(np.zeros((2, 3), dtype=int), "must be \\[num_users=3, N\\]"), (np.full((3, 2), 10), "outside 0..9")],
)
def test_given_negatives_validated(table, message) -> None:
    data = make_data([[0, 1, 2]] * 3, num_items=10, eval_negatives={"test": table})
    with pytest.raises(ValueError, match=message):
        split_candidates(data, TEST, "given", 2, seed=0)


def test_unknown_sampler() -> None:
    data = make_data([[0, 1, 2]], num_items=5)
    with pytest.raises(ValueError, match="unknown sampler 'random'"):
        split_candidates(data, TEST, "random", 2, seed=0)
