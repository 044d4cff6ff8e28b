"""Top-K over the whole catalogue with known items removed: the one ranking step.

Scores come only from :meth:`Recommender.score_all`; excluded (user, item) pairs are
gathered from the user's history with the evaluator's ``csr_gather`` and set to
``-inf`` with the evaluator's own masking routine, so inference and the
full-ranking protocol remove known items identically. Rows with fewer than ``k`` items
left return ``-1`` ids (and ``-inf`` scores) in the trailing slots.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from data_modules.eval_rows import csr_gather
from data_modules.interactions import Histories
from recmodels.base import Context, Recommender
from train.evaluation.evaluator import mask_known

NO_ITEM = -1


def mask_pairs_(scores: Tensor, rows: Tensor, items: Tensor) -> Tensor:
    """Set ``scores[rows[j], items[j]] = -inf`` in place (rows index the batch), with the
    evaluator's own masking routine; ``scores`` must be a contiguous private copy."""
    if rows.numel():
        mask_known(scores, rows.to(scores.device), items.to(scores.device))
    return scores


def known_pairs(known: Histories, users: np.ndarray) -> tuple[Tensor, Tensor]:
    """Flattened (batch row, item) pairs of each user's known items."""
    rows, items = csr_gather(known, np.asarray(users, dtype=np.int64))
    return torch.from_numpy(rows), torch.from_numpy(items)


def top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(items [B,k], scores [B,k]) best first; masked slots get item ``-1``.

    Equal scores are ordered by the lower item id, also at the cut-off, so results are
    reproducible and equal a stable descending sort. ``torch.topk`` alone does not
    promise that, and a full sort is ~50x slower, so only rows whose k-th and
    (k+1)-th scores tie take the exact path.
    """
    num_items = scores.shape[1]
    k = min(int(k), num_items)
    values, items = scores.topk(min(k + 1, num_items), dim=1)
    if k < num_items:
        boundary = (values[:, k - 1] == values[:, k]) & (values[:, k - 1] > float("-inf"))
        values, items = values[:, :k].clone(), items[:, :k].clone()
        rows = boundary.nonzero().squeeze(1)
        if rows.numel():
            items[rows], values[rows] = _exact_top_k(scores[rows], k)
    items, values = _order_by_score_then_id(items, values)
    return items.masked_fill(values == float("-inf"), NO_ITEM), values


def _exact_top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k where ties at the cut-off go to the lowest ids (few rows only)."""
    kth = scores.topk(k, dim=1).values[:, -1:]
    above = scores > kth
    tied = scores == kth
    need = k - above.sum(1, keepdim=True)
    chosen = above | (tied & (tied.cumsum(1) <= need))
    items = chosen.nonzero()[:, 1].view(len(scores), k)
    return items, scores.gather(1, items)


def _order_by_score_then_id(items: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    by_id = items.argsort(dim=1)
    items, values = items.gather(1, by_id), values.gather(1, by_id)
    by_score = torch.sort(values, dim=1, descending=True, stable=True).indices
    return items.gather(1, by_score), values.gather(1, by_score)


@torch.inference_mode()
def recommend(
    model: Recommender,
    context: Context,
    k: int,
    exclude: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Top-``k`` items and scores for a batch of contexts, ``exclude`` pairs removed."""
    raw = model.score_all(context)
    # Masking writes in place: never into a view the model may share (an expanded row,
    # a parameter), so take a private float32 copy.
    scores = (raw.float() if raw.dtype != torch.float32 else raw.clone()).contiguous()
    if scores.dim() != 2 or scores.shape[1] != model.num_items:
        raise ValueError(f"score_all returned shape {tuple(scores.shape)}, expected [B, {model.num_items}]")
    if torch.isnan(scores).any():
        raise ValueError("the model produced NaN scores; check the weights (was training diverging?)")
    if exclude is not None:
        mask_pairs_(scores, *exclude)
    return top_k(scores, k)
