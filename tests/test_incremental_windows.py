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
from train.incremental import TimeWindowProtocol

# T = 10, D = 5: base t < 10, update [10, 15), eval [15, 20).
ROWS = [
    ("a", 1, 1), ("a", 2, 4), ("a", 3, 12), ("a", 4, 16), ("a", 5, 17),  # a: target item 4 at 16
    ("b", 2, 2), ("b", 9, 18), ("b", 1, 19),  # b: item 9 is unknown before 15 -> target item 1 at 19
    ("c", 3, 11), ("c", 6, 14),  # c: only in the update window, nothing to evaluate
    ("d", 1, 16),  # d: unknown before 15 -> not evaluated
    ("e", 7, 3), ("e", 8, 13), ("e", 6, 15), ("e", 2, 21),  # e: target item 6 at 15; t=21 is past the window
    ("f", 10, 5), ("f", 11, 6), ("f", 12, 7), ("f", 13, 8), ("f", 14, 9), ("f", 0, 10),  # more items
]


@pytest.fixture
def protocol() -> TimeWindowProtocol:
    raw = pd.DataFrame(ROWS, columns=["user", "item", "timestamp"])
    return TimeWindowProtocol(raw, start=10, delta=5)


def test_windows_split_rows_by_time(protocol: TimeWindowProtocol) -> None:
    stamps = lambda frame: sorted(frame["timestamp"].tolist())  # noqa: E731
    assert stamps(protocol.training_rows("base")) == list(range(1, 10))
    assert stamps(protocol.training_rows("update")) == [10, 11, 12, 13, 14]
    assert stamps(protocol.training_rows("all")) == list(range(1, 15))


def test_targets_are_each_known_users_first_interaction_with_a_known_item(protocol: TimeWindowProtocol) -> None:
    targets, report = protocol.targets(protocol.update_end, protocol.eval_end)
    assert list(zip(targets["user"], targets["item"], targets["timestamp"])) == [
        ("a", 4, 16), ("b", 1, 19), ("e", 6, 15)
    ]
    assert report == {"window_rows": 7, "rows_of_new_users": 1, "rows_of_new_items_known_users": 1,
                      "users_evaluated": 3}


def test_stage_tables_and_cutoffs(protocol: TimeWindowProtocol) -> None:
    base = protocol.stage_table("base")
    # base rows + first update-window interaction of known users a (t=12) and e (t=13)
    assert sorted(base["timestamp"].tolist()) == [*range(1, 10), 10, 12, 13]
    assert protocol.stage_cutoffs("base") == [10.0, 12.0]  # f's t=10 validates, a/e's after test
    assert protocol.stage_cutoffs("all") == [15.0, 16.0]


def test_eval_data_puts_history_in_train_and_targets_in_test(protocol: TimeWindowProtocol) -> None:
    users = np.array(["f", "e", "c", "b", "a"], dtype=object)  # any order, e.g. an aligned map
    items = np.arange(15)[::-1]
    data = protocol.eval_data(users, items)
    test_users, test_items = data.targets(TEST)
    assert [(users[u], items[i]) for u, i in zip(test_users, test_items)] == [("e", 6), ("b", 1), ("a", 4)]
    assert len(data.rows(TRAIN)) == 14
    assert data.histories(TRAIN).of(4).tolist() == [items.tolist().index(i) for i in (1, 2, 3)]  # a, by time
    with pytest.raises(IdMapError, match="outside the model's id map"):
        protocol.eval_data(users[:-1], items)


def test_metrics_equal_a_brute_force_ranking(protocol: TimeWindowProtocol) -> None:
    torch.manual_seed(3)
    users = np.array(["a", "b", "c", "e", "f"], dtype=object)
    items = np.arange(15)
    model = GMF(len(users), len(items), embed_dim=4)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 1)
    got = protocol.evaluate(model, users, items, Evaluator(ks=[10], metrics=["hr", "ndcg"]))
    with torch.no_grad():
        scores = model.score_all({"user": torch.arange(len(users))}).numpy()
    history = protocol.training_rows("all")
    hits, gains = [], []
    for user, target in (("a", 4), ("b", 1), ("e", 6)):
        u = list(users).index(user)
        row = scores[u].copy()
        seen = [i for i in history[history["user"] == user]["item"] if i != target]
        row[seen] = -np.inf
        rank = int((row >= row[target]).sum()) - 1  # pessimistic: ties rank ahead
        hits.append(rank < 10)
        gains.append(1 / math.log2(rank + 2) if rank < 10 else 0.0)
    assert got["hr@10"] == pytest.approx(np.mean(hits))
    assert got["ndcg@10"] == pytest.approx(np.mean(gains))
