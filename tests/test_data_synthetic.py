"""Synthetic data: deterministic per seed, and its structure is learnable."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.sources import synthetic
from data_modules.synthetic_generator import generate

SMALL = dict(num_users=300, num_items=200, num_clusters=4, min_length=20, max_length=40)


def test_same_seed_same_data_other_seed_other_data():
    a, b = synthetic(seed=3, **SMALL), synthetic(seed=3, **SMALL)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.item_features, b.item_features)
    pd.testing.assert_frame_equal(a.user_features, b.user_features)
    c = synthetic(seed=4, **SMALL)
    assert not a.interactions["item"].equals(c.interactions["item"])


def test_shape_and_contract():
    data = synthetic(seed=0, **SMALL)
    inter = data.interactions
    lengths = np.bincount(inter["user"], minlength=data.num_users)
    assert data.num_users == 300 and lengths.min() >= 20 and lengths.max() <= 40
    assert not inter.duplicated(["user", "item"]).any()  # users never repeat an item
    ordered = inter.groupby("user")["timestamp"].apply(lambda t: t.is_monotonic_increasing)
    assert ordered.all()
    last_two = inter.groupby("user")["split"].apply(lambda s: list(s.tail(2)))
    assert all(pair == [VAL, TEST] for pair in last_two)
    assert list(data.item_features.columns) == ["genres", "year"]
    assert list(data.user_features.columns) == ["gender", "age"]
    assert data.item_features["genres"].map(len).between(1, 2).all()
    # Zipf skew: the top 10% of items hold over twice their uniform share.
    counts = np.sort(np.bincount(inter["item"]))[::-1]
    assert counts[: len(counts) // 10].sum() > 0.2 * counts.sum()


def test_genres_follow_clusters():
    tables = generate(seed=1, **SMALL)
    primary = tables.item_features["genres"].map(lambda g: g[0]).to_numpy()
    # Most items of a cluster share the cluster's genre.
    shares = [
        pd.Series(primary[tables.item_cluster == c]).value_counts(normalize=True).iloc[0] for c in range(4)
    ]
    assert min(shares) > 0.6


def hit_rate(scores: np.ndarray, seen: np.ndarray, targets: np.ndarray, k: int = 10) -> float:
    scores = np.where(seen, -np.inf, scores)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def test_structure_beats_popularity():
    data = synthetic(seed=0, **SMALL)
    rows = data.rows(TRAIN, VAL)
    users, items = rows["user"].to_numpy(), rows["item"].to_numpy()
    test_users, targets = data.targets(TEST)
    seen = np.zeros((data.num_users, data.num_items), dtype=bool)
    seen[users, items] = True
    seen = seen[test_users]
    popularity = np.bincount(items, minlength=data.num_items).astype(float)
    pop_hr = hit_rate(np.tile(popularity, (len(test_users), 1)), seen, targets)
    # Sequential: count item -> next item transitions in the training histories.
    same_user = users[1:] == users[:-1]
    transitions = np.zeros((data.num_items, data.num_items))
    np.add.at(transitions, (items[:-1][same_user], items[1:][same_user]), 1.0)
    history = data.histories(TRAIN, VAL)
    last = history.items[history.indptr[test_users + 1] - 1]
    seq_hr = hit_rate(transitions[last] + 1e-6 * popularity, seen, targets)
    # Collaborative: cosine item-item similarity of the user's items.
    matrix = np.zeros((data.num_users, data.num_items))
    matrix[users, items] = 1.0
    normed = matrix / np.sqrt(np.maximum(matrix.sum(axis=0, keepdims=True), 1.0))
    knn_hr = hit_rate(matrix[test_users] @ (normed.T @ normed), seen, targets)
    assert pop_hr < 0.2
    assert seq_hr > pop_hr + 0.15 and knn_hr > pop_hr + 0.1, (pop_hr, seq_hr, knn_hr)


def test_invalid_settings():
    with pytest.raises(ValueError, match="max_length=150 must be at most num_items/2"):
        generate(num_items=200, max_length=150)
    with pytest.raises(ValueError, match="p_sequential"):
        generate(p_sequential=0.8, p_cluster=0.5)
