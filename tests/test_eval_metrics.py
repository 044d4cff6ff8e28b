"""RankingMetrics and pessimistic_rank against hand computations and brute force."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_eval_support import brute_force_metrics, brute_force_rank

from train.evaluation import RankingMetrics, pessimistic_rank


@pytest.mark.parametrize(
    ("row", "target", "expected"),
    [
        ([3.0, 1.0, 2.0], 0, 0),  # strictly best
        ([3.0, 1.0, 2.0], 1, 2),  # strictly worst
        ([2.0, 2.0, 1.0], 0, 1),  # one tie counts against the target
        ([1.0, 1.0, 1.0], 2, 2),  # all tied: worst rank, whatever the position
        ([5.0, float("-inf"), float("-inf")], 0, 0),  # masked items never beat a real score
        ([float("-inf"), float("-inf"), 0.0], 0, 2),  # a -inf target ties with masked items
        ([float("inf"), float("inf"), 0.0], 1, 1),
    ],
)
def test_pessimistic_rank_explicit_ties(row, target, expected) -> None:
    ranks = pessimistic_rank(torch.tensor([row]), torch.tensor([target]))
    assert ranks.tolist() == [expected]


def test_pessimistic_rank_rejects_nan() -> None:
    scores = torch.tensor([[1.0, 2.0], [float("nan"), 0.0]])
    with pytest.raises(ValueError, match="NaN scores in 1 of 2 rows"):
        pessimistic_rank(scores, torch.tensor([0, 1]))


def test_pessimistic_rank_matches_brute_force_with_ties() -> None:
    gen = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 4, (40, 12), generator=gen).float()  # many ties
    target = torch.randint(0, 12, (40,), generator=gen)
    expected = [brute_force_rank(scores[b].tolist(), int(target[b]), set()) for b in range(40)]
    assert pessimistic_rank(scores, target).tolist() == expected


def test_metrics_match_brute_force_over_batches() -> None:
    gen = torch.Generator().manual_seed(0)
    ks = (1, 3, 10)
    scores = torch.randint(0, 6, (90, 25), generator=gen).float()
    target = torch.randint(0, 25, (90,), generator=gen)
    ranks = pessimistic_rank(scores, target)
    metric = RankingMetrics(ks, num_items=25, metrics=("hr", "ndcg", "mrr", "precision", "f1"))
    for lo in range(0, 90, 32):  # uneven batches
        metric.update(ranks[lo : lo + 32], None)
    got = {k: float(v) for k, v in metric.compute().items()}
    ranks_py = [brute_force_rank(scores[b].tolist(), int(target[b]), set()) for b in range(90)]
    expected = brute_force_metrics(ranks_py, ks)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-9), key


def test_metric_values_by_hand() -> None:
    metric = RankingMetrics((2,), num_items=5, metrics=("hr", "ndcg", "mrr", "precision", "f1", "recall"))
    metric.update(torch.tensor([0, 1, 4]), None)
    out = {k: float(v) for k, v in metric.compute().items()}
    assert out["hr@2"] == pytest.approx(2 / 3)
    assert out["recall@2"] == pytest.approx(2 / 3)
    assert out["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert out["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 3)
    assert out["mrr@2"] == pytest.approx((1 + 1 / 2) / 3)
    assert out["precision@2"] == pytest.approx(1 / 3)
    # Per hit row: P=1/2, R=1 -> F1=2/3; averaged over 3 rows with 2 hits.
    assert out["f1@2"] == pytest.approx((2 / 3) * 2 / 3)


def test_coverage_counts_distinct_items_per_cutoff() -> None:
    metric = RankingMetrics((1, 2), num_items=6, metrics=("coverage",))
    metric.update(torch.tensor([0, 5]), torch.tensor([[0, 1], [1, 2]]))
    metric.update(torch.tensor([3]), torch.tensor([[0, -1]]))  # -1: list shorter than k
    out = {k: float(v) for k, v in metric.compute().items()}
    assert out == pytest.approx({"coverage@1": 2 / 6, "coverage@2": 3 / 6})


def test_coverage_matches_python_sets() -> None:
    rng = np.random.default_rng(5)
    lists = np.stack([rng.permutation(40)[:7] for _ in range(30)])
    metric = RankingMetrics((3, 7), num_items=40, metrics=("coverage",))
    metric.update(torch.zeros(30, dtype=torch.long), torch.from_numpy(lists))
    out = metric.compute()
    for k in (3, 7):
        seen = {int(i) for row in lists for i in row[:k]}
        assert float(out[f"coverage@{k}"]) == pytest.approx(len(seen) / 40)


def test_coverage_needs_topk_items() -> None:
    metric = RankingMetrics((2,), num_items=4)
    with pytest.raises(ValueError, match="coverage needs topk_items"):
        metric.update(torch.tensor([0]), None)
    with pytest.raises(ValueError, match="item id >= num_items"):
        metric.update(torch.tensor([0]), torch.tensor([[0, 4]]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ks": (0, 10)}, "positive"),
        ({"ks": ()}, "at least one"),
        ({"metrics": ("hr", "auc")}, "unknown metric"),
        ({"num_items": 0}, "num_items must be positive"),
    ],
)
def test_invalid_arguments(kwargs, message) -> None:
    args = {"ks": (10,), "num_items": 5} | kwargs
    with pytest.raises(ValueError, match=message):
        RankingMetrics(**args)


def test_states_are_sums_reduced_by_sum() -> None:
    metric = RankingMetrics((5, 10), num_items=7)
    assert set(metric._reductions) == {"count", "hits", "ndcg_sum", "rr_at_k_sum", "rr_sum", "item_counts"}
    for name, fn in metric._reductions.items():
        assert fn is not None and "sum" in getattr(fn, "__name__", str(fn)), name


def test_sums_stay_float64_under_precision_casts() -> None:
    """A bf16 precision plugin calls module.to(torch.bfloat16); sums must not be rounded."""
    metric = RankingMetrics((10,), num_items=5000, metrics=("mrr",)).to(torch.bfloat16)
    metric.half()
    ranks = torch.arange(3001)
    metric.update(ranks, None)
    assert metric.rr_sum.dtype == torch.float64
    expected = sum(1.0 / (r + 1) for r in range(3001)) / 3001
    assert float(metric.compute()["mrr"]) == pytest.approx(expected, rel=1e-12)
    metric.reset()
    assert metric.rr_sum.dtype == torch.float64 and float(metric.rr_sum) == 0.0
