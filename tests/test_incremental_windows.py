"""The time-window protocol: window rows, next-interaction targets, brute-force metrics."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from data_modules.alignment import IdMapError
from data_modules.interactions import TEST, TRAIN
from recmodels.ncf import GMF
from train.evaluation import Evaluator
from train.training.incremental import TimeWindowProtocol

# T = 10, D = 5: base t < 10, update [10, 15), eval [15, 20).
ROWS = [
    *[("f", item, item + 2) for item in range(8)],  # f makes items 0..7 known early (t = 2..9)
    ("a", 1, 1), ("a", 2, 4), ("a", 3, 12), ("a", 4, 16), ("a", 5, 17),  # a: eval target 4 at 16
    ("b", 2, 2), ("b", 7, 11), ("b", 9, 18), ("b", 1, 19),  # b: item 9 is new at 18 -> target 1 at 19
    ("c", 3, 11), ("c", 6, 14),  # c: only in the update window, nothing to evaluate
    ("d", 1, 16),  # d: unknown before 15 -> not evaluated
    ("e", 7, 3), ("e", 8, 13), ("e", 6, 15), ("e", 2, 21),  # e: target 6 at 15; t=21 is past the window
]


@pytest.fixture
def protocol() -> TimeWindowProtocol:
    raw = pd.DataFrame(ROWS, columns=["user", "item", "timestamp"])
    return TimeWindowProtocol(raw, start=10, delta=5)


def test_windows_split_rows_by_time(protocol: TimeWindowProtocol) -> None:
    stamps = lambda frame: sorted(frame["timestamp"].tolist())  # noqa: E731
    base = [1, 2, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9]
    assert stamps(protocol.training_rows("base")) == base
    assert stamps(protocol.training_rows("update")) == [11, 11, 12, 13, 14]
    assert stamps(protocol.training_rows("all")) == sorted([*base, 11, 11, 12, 13, 14])


def test_targets_are_each_known_users_first_interaction_with_a_known_item(protocol: TimeWindowProtocol) -> None:
    targets, report = protocol.targets(protocol.update_end, protocol.eval_end)
    assert list(zip(targets["user"], targets["item"], targets["timestamp"])) == [
        ("a", 4, 16), ("b", 1, 19), ("e", 6, 15)
    ]
    assert report == {"window_rows": 6, "rows_of_new_users": 1, "rows_of_new_items_known_users": 1,
                      "users_evaluated": 3}


def test_stage_tables_and_cutoffs(protocol: TimeWindowProtocol) -> None:
    base = protocol.stage_table("base")
    # base rows + the update window's first known interactions: b's 7 at 11 and a's 3 at 12
    # (c is unknown before T, e's item 8 is new).
    assert sorted(base["timestamp"].tolist()) == [1, 2, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9, 11, 12]
    assert protocol.stage_cutoffs("base") == [10.0, 12.0]  # b validates, a tests
    assert protocol.stage_cutoffs("all") == [15.0, 16.0]  # e validates; a, b test
    assert len(protocol.stage_table("update")) == 5 + 3


def test_eval_data_puts_history_in_train_and_targets_in_test(protocol: TimeWindowProtocol) -> None:
    users = np.array(["f", "e", "c", "b", "a"], dtype=object)  # any order, e.g. an aligned map
    items = np.arange(10)[::-1]  # item i has internal id 9 - i
    data = protocol.eval_data(users, items)
    test_users, test_items = data.targets(TEST)
    assert [(users[u], items[i]) for u, i in zip(test_users, test_items)] == [("e", 6), ("b", 1), ("a", 4)]
    assert len(data.rows(TRAIN)) == 17
    assert data.histories(TRAIN).of(4).tolist() == [8, 7, 6]  # a's items 1, 2, 3 in time order
    with pytest.raises(IdMapError, match="outside the model's id map"):
        protocol.eval_data(users[:-1], items)


def test_metrics_equal_a_brute_force_ranking(protocol: TimeWindowProtocol) -> None:
    torch.manual_seed(3)
    users = np.array(["a", "b", "c", "e", "f"], dtype=object)
    items = np.arange(10)
    model = GMF(len(users), len(items), embed_dim=4)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 1)
    got = protocol.evaluate(model, users, items, Evaluator(ks=[3], metrics=["hr", "ndcg"]))
    with torch.no_grad():
        scores = model.score_all({"user": torch.arange(len(users))}).numpy()
    history = protocol.training_rows("all")
    hits, gains = [], []
    for user, target in (("a", 4), ("b", 1), ("e", 6)):
        row = scores[list(users).index(user)].copy()
        seen = [i for i in history[history["user"] == user]["item"] if i != target]
        row[seen] = -np.inf
        rank = int((row >= row[target]).sum()) - 1  # pessimistic: ties rank ahead
        hits.append(rank < 3)
        gains.append(1 / math.log2(rank + 2) if rank < 3 else 0.0)
    assert 0 < np.mean(hits) < 1  # the check can tell hits from misses
    assert got["hr@3"] == pytest.approx(np.mean(hits))
    assert got["ndcg@3"] == pytest.approx(np.mean(gains))
