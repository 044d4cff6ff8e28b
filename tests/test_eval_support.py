"""Tiny hand-made data and fixed-score models for the evaluation tests (no tests here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from torch import Tensor

from data_modules.interactions import TEST, TRAIN, VAL, InteractionData
from recmodels.base import Recommender


def make_data(
    sequences: list[list[int]], num_items: int, eval_negatives: dict | None = None
) -> InteractionData:
    """Leave-one-out data from explicit per-user sequences (last = test, second last = val)."""
    rows = []
    for user, seq in enumerate(sequences):
        for t, item in enumerate(seq):
            split = TEST if t == len(seq) - 1 else VAL if t == len(seq) - 2 else TRAIN
            rows.append((user, item, t, split))
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "split"])
    return InteractionData(
        interactions=frame,
        user_ids=np.arange(len(sequences)),
        item_ids=np.arange(num_items),
        name="tiny",
        eval_negatives=eval_negatives or {},
    )


def random_data(num_users: int, num_items: int, min_len: int, max_len: int, seed: int) -> InteractionData:
    """Random sequences of distinct items plus a few re-consumed test targets."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(num_users):
        seq = list(rng.choice(num_items, size=int(rng.integers(min_len, max_len + 1)), replace=False))
        if rng.random() < 0.2:  # re-consumption: the test target was already seen in train
            seq[-1] = seq[0]
        seqs.append([int(i) for i in seq])
    return make_data(seqs, num_items)


class TableModel(Recommender):
    """Scores read from a fixed [num_users, num_items] table (fresh tensor per call)."""

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table.float())
        self.num_items = table.shape[1]

    def score_all(self, context: dict[str, Tensor]) -> Tensor:
        return self.table[context["user"]]  # advanced indexing returns a copy


def known_by_split(data: InteractionData) -> dict[tuple[int, int], set[int]]:
    """(user, split) -> items, read straight from the DataFrame (independent of the CSR code)."""
    out: dict[tuple[int, int], set[int]] = {}
    for u, i, s in data.interactions[["user", "item", "split"]].itertuples(index=False):
        out.setdefault((int(u), int(s)), set()).add(int(i))
    return out


def brute_force_metrics(ranks: list[int], ks: tuple[int, ...]) -> dict[str, float]:
    """Metrics by plain loops over per-row ranks, straight from the definitions."""
    out: dict[str, float] = {}
    n = len(ranks)
    for k in ks:
        hr = ndcg = mrr_k = prec = f1 = 0.0
        for r in ranks:
            hit = 1.0 if r < k else 0.0
            p, rec = hit / k, hit
            hr += hit
            ndcg += hit / np.log2(r + 2)
            mrr_k += hit / (r + 1)
            prec += p
            f1 += 0.0 if p + rec == 0 else 2 * p * rec / (p + rec)
        out[f"hr@{k}"], out[f"ndcg@{k}"], out[f"mrr@{k}"] = hr / n, ndcg / n, mrr_k / n
        out[f"precision@{k}"], out[f"f1@{k}"] = prec / n, f1 / n
    out["mrr"] = sum(1.0 / (r + 1) for r in ranks) / n
    return out


def brute_force_rank(scores: list[float], target_index: int, excluded: set[int]) -> int:
    """Number of non-excluded other items scoring >= the target (pessimistic ties)."""
    t = scores[target_index]
    return sum(1 for j, s in enumerate(scores) if j != target_index and j not in excluded and s >= t)

