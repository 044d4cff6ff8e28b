"""Top-K over the whole catalogue with known items removed, for serving and batch output.

Ranking is the evaluator's own (:mod:`train.evaluation.chunked_ranking`): scores come
from :meth:`Recommender.item_scores` a chunk of items at a time, excluded (user, item)
pairs are gathered from the user's history with the evaluator's ``csr_gather`` and set
to ``-inf`` with the evaluator's masking routine, and the running top-K orders equal
scores by the lower item id. Inference and the full-ranking protocol therefore remove
known items and break ties identically, and memory stays one [B, chunk] block at any
catalogue size. Rows with fewer than ``k`` items left return ``-1`` ids (and ``-inf``
scores) in the trailing slots.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from data_modules.eval_rows import csr_gather
from data_modules.interactions import Histories
from recmodels.base import Context, Recommender
from train.evaluation.chunked_ranking import NO_ITEM, mask_known, rank_items, top_k
from train.serving.quantized_index import screened_top_k

__all__ = ["NO_ITEM", "known_pairs", "mask_pairs_", "recommend", "top_k"]


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


@torch.inference_mode()
def recommend(
    model: Recommender,
    context: Context,
    k: int,
    exclude: tuple[Tensor, Tensor] | None = None,
    chunk_items: int | None = None,
    index: str = "auto",
) -> tuple[Tensor, Tensor]:
    """Top-``k`` items and scores for a batch of contexts, ``exclude`` pairs removed.

    ``chunk_items`` items are scored per step (None: sized by the batch, see
    :func:`~train.evaluation.chunked_ranking.chunk_width`). ``index``: ``auto`` answers
    a few users over a large catalogue from the model's int8 index
    (:mod:`train.serving.quantized_index`: the same exact result, ~4x fewer bytes read),
    ``quantized`` does so at any catalogue size, ``exact`` always ranks chunk by chunk."""
    batch = len(next(iter(context.values())))
    found = screened_top_k(model, context, k, exclude, batch, index, chunk_items)
    if found is not None:
        return found
    ranking = rank_items(model.item_scores(context), model.num_items, batch, k, exclude, chunk_items=chunk_items)
    return ranking.items, ranking.values
