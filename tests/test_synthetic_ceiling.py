"""The generated data's ceiling: the oracle ranks by the generator's own odds, checked by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from data_modules.interactions import TEST
from data_modules.sources import sequence_file, synthetic
from data_modules.synthetic_generator import generate
from recmodels.pop import MostPopular
from train.evaluation import Evaluator
from train.evaluation.evaluator import evaluate
from train.evaluation.synthetic_ceiling import WalkOracle

SETTINGS = dict(num_users=150, num_items=80, num_clusters=4, min_length=6, max_length=30, seed=5)


def _hand_weights(process, cluster: int, history: list[int]) -> np.ndarray:
    """The generator's next-pick weights item by item, as its docstring states them."""
    items = len(process.popularity)
    home = process.cluster_pop[cluster]
    last, before = history[-1], history[-2] if len(history) > 1 else history[-1]
    recent = [0.0 if home[i] <= 0 or i in history else
              0.75 * process.transitions[last, i] + 0.25 * process.transitions[before, i] for i in range(items)]
    mass = sum(recent)
    noise = 1.0 - process.p_sequential - process.p_cluster
    weights = np.zeros(items)
    for i in range(items):
        seq = recent[i] / mass if mass > 0 else home[i]
        weights[i] = 0.0 if i in history else process.p_sequential * seq + process.p_cluster * home[i] + noise * process.popularity[i]
    return weights


def _permuted_file(tables, tmp_path) -> tuple:
    """The data as a SASRec sequence file whose item ids are a permutation of the
    generator's: (data, generator item of each internal item, its user of each)."""
    perm = np.random.default_rng(0).permutation(SETTINGS["num_items"]) + 100
    path = tmp_path / "generated.txt"
    path.write_text("".join(f"{u + 1} {perm[i]}\n" for u, i in zip(tables.raw.user, tables.raw.item)))
    data = sequence_file(path=str(path), cache=False)
    process_items = np.argsort(perm)[data.item_ids - 100]
    return data, process_items, data.user_ids - 1


@pytest.mark.parametrize("source", ["generated", "permuted file"])
def test_oracle_ndcg_equals_a_by_hand_ranking_of_every_test_user(source: str, tmp_path) -> None:
    tables = generate(**SETTINGS)
    if source == "generated":
        data = synthetic(**SETTINGS)
        process_items, process_users = data.item_ids, data.user_ids
    else:
        data, process_items, process_users = _permuted_file(tables, tmp_path)
        assert (process_items != np.arange(data.num_items)).any()
    oracle = WalkOracle(tables.process, process_items, tables.user_cluster[process_users])
    users, targets = data.targets(TEST)
    known = data.histories(*data.context_splits(TEST))
    gains = []
    for user, target in zip(users, targets):
        history = [int(process_items[i]) for i in known.of(user)]
        weights = _hand_weights(tables.process, int(tables.user_cluster[process_users[user]]), history)
        scores = weights[process_items]  # internal item order
        unseen = np.ones(data.num_items, dtype=bool)
        unseen[known.of(user)] = False
        others = unseen.copy()
        others[target] = False
        rank = int((scores[others] >= scores[target]).sum())  # pessimistic ties, like the evaluator
        gains.append(1.0 / math.log2(rank + 2) if rank < 10 else 0.0)
    measured = evaluate(oracle, data, "test", Evaluator(ks=[10], metrics=["ndcg"], max_history=SETTINGS["max_length"]))
    assert measured["ndcg@10"] == pytest.approx(float(np.mean(gains)), abs=1e-6)


def test_oracle_is_far_above_most_popular_on_sequential_data() -> None:
    settings = {**SETTINGS, "p_sequential": 0.9, "p_cluster": 0.05}
    tables = generate(**settings)
    data = synthetic(**settings)
    evaluator = Evaluator(ks=[10], metrics=["ndcg"], max_history=settings["max_length"])
    oracle = evaluate(WalkOracle(tables.process, data.item_ids, tables.user_cluster[data.user_ids]), data, "test", evaluator)
    popular = MostPopular(data.num_items)
    import torch

    popular.fit(torch.from_numpy(data.item_popularity()))
    baseline = evaluate(popular, data, "test", evaluator)
    assert oracle["ndcg@10"] > 2 * baseline["ndcg@10"]


def test_oracle_refuses_rows_without_history() -> None:
    import torch

    tables = generate(**SETTINGS)
    oracle = WalkOracle(tables.process, np.arange(SETTINGS["num_items"]), tables.user_cluster)
    context = {"user": torch.tensor([0, 1]), "history": torch.tensor([[-1, 3], [-1, -1]])}
    with pytest.raises(ValueError, match="history"):
        oracle.score_all(context)
