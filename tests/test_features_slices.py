"""Slice evaluation: ``rows=`` ranks only the chosen rows, through the one evaluator."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data_modules.interactions import TEST, TRAIN, VAL
from data_modules.synthetic_generator import generate
from data_modules.preprocessing import preprocess
from recmodels.base import Recommender
from train.evaluation.evaluator import Evaluator, evaluate


class FixedScores(Recommender):
    """Scores from a fixed random [users, items] matrix (no ties)."""

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.table = torch.nn.Parameter(torch.rand(num_users, num_items, generator=torch.Generator().manual_seed(3)))

    def score_all(self, context):
        return self.table[context["user"]].clone()


@pytest.fixture(scope="module")
def data():
    tables = generate(num_users=40, num_items=30, min_length=5, max_length=10, seed=1)
    return preprocess(tables.raw, {"split": "loo"})


def brute_force_ndcg(model: FixedScores, data, rows: np.ndarray) -> float:
    users, targets = data.targets(TEST)
    seen = data.histories(TRAIN, VAL)
    gains = []
    for r in rows:
        scores = model.table[users[r]].detach().numpy().copy()
        known = [i for i in seen.of(users[r]) if i != targets[r]]
        scores[known] = -np.inf
        rank = 1 + int((scores > scores[targets[r]]).sum())
        gains.append(1 / np.log2(rank + 1) if rank <= 10 else 0.0)
    return float(np.mean(gains))


def test_rows_filter_matches_brute_force_on_the_slice(data) -> None:
    model = FixedScores(data.num_users, data.num_items)
    evaluator = Evaluator(ks=(10,), batch_size=7)
    rows = np.array([3, 0, 17, 25, 26])
    got = evaluate(model, data, "test", evaluator, rows=rows)["ndcg@10"]
    assert got == pytest.approx(brute_force_ndcg(model, data, rows))
    mask = np.zeros(data.num_users, dtype=bool)
    mask[rows] = True
    assert evaluate(model, data, "test", evaluator, rows=mask)["ndcg@10"] == pytest.approx(got)


def test_slices_partition_the_whole_split(data) -> None:
    model = FixedScores(data.num_users, data.num_items)
    evaluator = Evaluator(ks=(10,))
    mask = np.arange(data.num_users) % 3 == 0
    whole = evaluate(model, data, "test", evaluator)["ndcg@10"]
    part = evaluate(model, data, "test", evaluator, rows=mask)["ndcg@10"]
    rest = evaluate(model, data, "test", evaluator, rows=~mask)["ndcg@10"]
    assert whole == pytest.approx((part * mask.sum() + rest * (~mask).sum()) / len(mask))


def test_bad_rows_are_rejected(data) -> None:
    evaluator = Evaluator(ks=(10,))
    with pytest.raises(ValueError, match="boolean rows mask"):
        evaluator.dataloader(data, "test", rows=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="rows must index"):
        evaluator.dataloader(data, "test", rows=np.array([data.num_users]))
