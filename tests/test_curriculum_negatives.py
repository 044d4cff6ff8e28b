"""Negative-hardness curriculum: the mix schedule, and hard negatives are never positives."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from data_modules.interactions import TRAIN, InteractionData
from data_modules.negatives import NegativeSampler
from data_modules.pairs import PairDataModule
from recmodels.base import Recommender
from train.curriculum import Curriculum, HardNegativeMiner, MixedNegativeSampler, NegativeHardness


class ItemIdScorer(Recommender):
    """Scores item i as i (the same for every user): the hardest negatives are the largest ids."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.num_items = num_items
        self.weight = nn.Parameter(torch.zeros(1))

    def score_all(self, context: dict[str, Tensor]) -> Tensor:
        rows = len(context["user"])
        return torch.arange(self.num_items, dtype=torch.float32).expand(rows, -1) + self.weight


def known_heavy_data(num_users: int = 12, num_items: int = 15, seed: int = 0) -> InteractionData:
    """Every user knows most of the catalogue, including many of the largest ids."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        items = rng.choice(num_items, size=int(rng.integers(6, num_items - 3)), replace=False)
        rows += [(user, int(item), t, TRAIN) for t, item in enumerate(items)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"])
    return InteractionData(frame, np.arange(num_users), np.arange(num_items), name="dense")


def _known_sets(data: InteractionData) -> list[set[int]]:
    rows = data.rows(TRAIN)
    return [set(rows.loc[rows["user"] == u, "item"].tolist()) for u in range(data.num_users)]


def test_miner_keeps_top_scored_non_positives_by_brute_force() -> None:
    data = known_heavy_data()
    rows = data.rows(TRAIN)
    sampler = NegativeSampler(rows["user"].to_numpy(), rows["item"].to_numpy(), data.num_items)
    # 400 uniform draws over <= 9 allowed items miss one with probability < 1e-18
    miner = HardNegativeMiner(sampler, candidates=400, top_k=3, seed=1)
    users = np.arange(data.num_users)
    cache = miner.mine(ItemIdScorer(data.num_items), users, None, data.num_users, step=0)
    for user, known in enumerate(_known_sets(data)):
        allowed = sorted(set(range(data.num_items)) - known)
        assert sorted(cache[user].tolist()) == allowed[-3:]  # the 3 largest unknown ids


def expected_cache_share(cache: np.ndarray, known: list[set[int]], num_items: int, fraction: float) -> float:
    """Share of draws that are cache items, by hand: a draw is swapped for a random cache
    slot with probability ``fraction`` (an empty slot, -1, keeps the base draw); a base
    draw is uniform over the user's non-positives, of which the cache holds a few."""
    shares = []
    for user, row in enumerate(cache):
        filled = row[row >= 0]
        allowed = num_items - len(known[user])
        swapped = fraction * len(filled) / len(row)
        shares.append(swapped + (1 - swapped) * len(set(filled.tolist())) / allowed)
    return float(np.mean(shares))


def test_mixed_sampler_never_returns_a_positive() -> None:
    data = known_heavy_data(seed=2)
    rows = data.rows(TRAIN)
    base = NegativeSampler(rows["user"].to_numpy(), rows["item"].to_numpy(), data.num_items)
    miner = HardNegativeMiner(base, candidates=20, top_k=4, seed=0)
    mixed = MixedNegativeSampler(base)
    mixed.cache = miner.mine(ItemIdScorer(data.num_items), np.arange(data.num_users), None, data.num_users, step=5)
    known = _known_sets(data)
    users = np.repeat(np.arange(data.num_users), 50)
    for fraction in (0.0, 0.5, 1.0):
        mixed.hard_fraction = fraction
        drawn = mixed.sample(users, 6, np.random.default_rng(7))
        assert not any(int(i) in known[int(u)] for u, row in zip(users, drawn) for i in row)
        from_cache = np.mean([int(i) in set(mixed.cache[u].tolist()) for u, row in zip(users, drawn) for i in row])
        expected = expected_cache_share(mixed.cache, known, data.num_items, fraction)
        assert abs(from_cache - expected) < 0.03, (fraction, from_cache, expected)  # 3600 draws: sd < 0.01
    mixed.hard_fraction = 1.0
    corrupt = mixed.cache.copy()
    corrupt[0] = sorted(known[0])[:4]  # a cache holding positives must never leak them
    mixed.cache = corrupt
    with pytest.raises(RuntimeError, match="positives"):
        mixed.sample(np.zeros(20, dtype=int), 3, np.random.default_rng(0))


def test_negative_schedule_and_knob_wiring() -> None:
    data = known_heavy_data(seed=3)
    module = PairDataModule(data, eval_spec=None, batch_size=4, num_negatives=3, seed=0)
    knob = NegativeHardness(hard_from=0.5, max_hard_fraction=0.6, max_popularity_weight=0.8, candidates=30, top_k=3, refresh_steps=10)
    curriculum = Curriculum({"name": "linear", "start": 0.5, "ramp_steps": 100}, knobs={"negatives": knob})
    curriculum.bind(module)
    assert isinstance(module.train_set.sampler, MixedNegativeSampler)
    model = ItemIdScorer(data.num_items)
    # progress = (c - 0.5) / 0.5 = step / 100 for this linear pacing
    expected = {0: (0.0, 0.0), 25: (0.4, 0.0), 50: (0.8, 0.0), 75: (0.8, 0.3), 100: (0.8, 0.6)}
    for step, (weight, hard) in expected.items():
        values = curriculum.step(step, model)
        assert values["neg_popularity_weight"] == pytest.approx(weight)
        assert values["neg_hard_fraction"] == pytest.approx(hard)
        assert knob.last_refresh == (None if step < 75 else step)
    counts = data.item_popularity().astype(float) ** 0.75
    mix = 0.2 / data.num_items + 0.8 * counts / counts.sum()
    np.testing.assert_allclose(module.train_set.sampler.base.probs, mix / mix.sum())
    assert knob.last_refresh == 100  # mined at 75 when hard negatives started, again 25 >= 10 steps later
    curriculum.step(105, model)
    assert knob.last_refresh == 100  # 5 < refresh_steps: the cache is kept
    curriculum.step(110, model)
    assert knob.last_refresh == 110
    batch = module.train_set[next(iter(module.make_train_sampler()))]
    known = _known_sets(data)
    negatives = batch["label"] == 0
    assert not any(int(i) in known[int(u)] for u, i in zip(batch["user"][negatives], batch["item"][negatives]))


def test_negative_knob_refuses_data_without_a_negative_sampler() -> None:
    module = PairDataModule(known_heavy_data(), eval_spec=None, batch_size=4, num_negatives=1)
    module.train_set.sampler = None
    with pytest.raises(ValueError, match="NegativeSampler"):
        Curriculum({"name": "linear", "start": 0.5, "ramp_steps": 10}, knobs=[NegativeHardness()]).bind(module)
