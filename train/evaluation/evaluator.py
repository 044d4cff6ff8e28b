"""The one evaluator: validation, test, benchmarks and inference all rank through it.

Protocols:
- ``full``: score the whole catalogue, remove the items of the context history
  (except the target itself) and rank the target among everything left. Scores are
  read ``chunk_items`` items at a time (:mod:`train.evaluation.chunked_ranking`), so
  memory stays bounded for any catalogue size and the result is the same.
- ``sampled``: rank the target among ``N`` negatives per row (``uniform`` or
  ``popularity`` samples, fixed once per split by ``seed``, or ``given`` lists).

A split's context is what a model may see when predicting it
(:meth:`InteractionData.context_splits`: validation sees train, test sees
train + val). Ranks are pessimistic (see :func:`pessimistic_rank`).
"""
from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from data_modules.eval_spec import PROTOCOLS, EvalSpec, parse_split
from data_modules.interactions import InteractionData
from recmodels.base import Recommender
from recmodels.modes import eval_mode
from train.evaluation.chunked_ranking import mask_known, rank_items
from train.evaluation.metrics import (
    DEFAULT_METRICS,
    RankingMetrics,
    check_ks,
    check_metrics,
    pessimistic_rank,
)

__all__ = ["PROTOCOLS", "Evaluator", "evaluate", "mask_known", "parse_split"]


class Evaluator:
    """Turns model scores into :class:`RankingMetrics` updates.

    Which rows and candidates are ranked is data, described by :attr:`spec`
    (:class:`~data_modules.eval_spec.EvalSpec`), which the data modules use to serve
    validation and test; the evaluator keeps the cutoffs, the metrics and the scoring.
    ``num_negatives`` is the number of sampled negatives; with ``sampler="given"``
    the width of the given lists is used instead. Coverage needs whole-catalogue
    top-k lists, so the sampled protocol leaves it out. ``chunk_items`` is the number of
    items scored per step in the full protocol (None: sized so a step's [batch, chunk]
    scores stay within 8 MiB; a larger value trades memory for fewer steps).
    """

    def __init__(
        self,
        protocol: str = "full",
        ks: Sequence[int] = (10,),
        num_negatives: int = 100,
        sampler: str = "uniform",
        seed: int = 0,
        batch_size: int = 512,
        max_history: int = 200,
        metrics: Sequence[str] = DEFAULT_METRICS,
        num_workers: int = 0,
        val_sampler: str | None = None,
        chunk_items: int | None = None,
    ) -> None:
        self.ks = check_ks(ks)
        self.chunk_items = _check_chunk_items(chunk_items)
        self.spec = EvalSpec(
            protocol, num_negatives, sampler, seed, batch_size, max_history, num_workers, val_sampler,
            max_k=max(self.ks),
        )
        self.metrics = check_metrics(metrics)

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def sampler(self) -> str:
        return self.spec.sampler

    @property
    def protocol_name(self) -> str:
        """Short label for logs and result tables, e.g. ``sampled-popularity-100``."""
        if self.protocol == "full":
            return "full"
        if self.sampler == "given":
            width = self.spec.given_width
            return "sampled-given" + ("" if width is None else f"-{width}")
        return f"sampled-{self.sampler}-{self.spec.num_negatives}"

    def new_metrics(self, num_items: int) -> RankingMetrics:
        """A fresh metric collection matching this protocol."""
        if self.protocol == "full" and max(self.ks) > num_items:
            raise ValueError(
                f"cutoff k={max(self.ks)} exceeds the catalogue: the data has {num_items} item(s) after "
                f"preprocessing, fewer than the largest eval k; lower eval.ks (e.g. eval.ks=[{num_items}]) "
                "or check the data (filters, path)"
            )
        metrics = self.metrics
        if self.protocol == "sampled":
            metrics = tuple(m for m in metrics if m != "coverage") or ("hr",)
        return RankingMetrics(self.ks, num_items=num_items, metrics=metrics)

    def candidates(self, data: InteractionData, split: int) -> np.ndarray:
        """``[rows, 1+N]`` candidates of ``split`` (see :meth:`EvalSpec.candidates`)."""
        return self.spec.candidates(data, split)

    def dataloader(
        self,
        data: InteractionData,
        split: int | str,
        rank: int = 0,
        world_size: int = 1,
        rows: np.ndarray | None = None,
    ) -> DataLoader:
        """This rank's batches of ``split`` (see :meth:`EvalSpec.dataloader`)."""
        return self.spec.dataloader(data, split, rank, world_size, rows)

    @torch.no_grad()
    def update(self, metric: RankingMetrics, model: Recommender, batch: dict[str, Tensor]) -> None:
        """Score one batch and add its ranks to ``metric``."""
        context = {"user": batch["user"], "history": batch["history"]}
        if self.protocol == "sampled":
            cands = batch["candidates"]
            scores = model.score_candidates(context, cands).float()
            _check_shape(scores, cands.shape, "score_candidates")
            # A listed negative that *is* the target item (NCF's test.negative has 156) is
            # the same item, not a competitor: drop it, as the paper's dict-based code does.
            duplicate = cands[:, 1:] == cands[:, :1]
            scores[:, 1:] = scores[:, 1:].masked_fill(duplicate, float("-inf"))
            target_col = torch.zeros(len(cands), dtype=torch.long, device=scores.device)
            metric.update(pessimistic_rank(scores, target_col), None)
            return
        coverage = "coverage" in metric.metrics
        ranking = rank_items(
            model.item_scores(context),
            metric.num_items,
            batch=len(batch["target"]),
            k=metric.max_k if coverage else 0,  # top-k lists only feed coverage
            exclude=(batch["mask_rows"], batch["mask_items"]),
            targets=batch["target"],
            chunk_items=self.chunk_items,
        )
        metric.update(ranking.ranks, ranking.items if coverage else None)


def _check_chunk_items(chunk_items: object) -> int | None:
    if chunk_items is None:
        return None
    try:
        value = None if isinstance(chunk_items, bool) else operator.index(chunk_items)
    except TypeError:
        value = None
    if value is None or value < 1:
        raise ValueError(
            f"eval.chunk_items must be a positive whole number of items or null (automatic), got {chunk_items!r}"
        )
    return value


def _check_shape(scores: Tensor, expected: Sequence[int], method: str) -> None:
    if tuple(scores.shape) != tuple(expected):
        raise ValueError(f"{method} returned shape {tuple(scores.shape)}, expected {tuple(expected)}")


def evaluate(
    model: Recommender,
    data: InteractionData,
    split: int | str,
    evaluator: Evaluator,
    device: str | torch.device = "cpu",
    rows: np.ndarray | None = None,
) -> dict[str, float]:
    """Evaluate ``model`` on one split without Lightning (benchmarks, inference, scripts).

    Moves the model to ``device`` and restores its train/eval mode afterwards.
    ``rows`` restricts it to a slice of the split's rows (see :meth:`Evaluator.dataloader`).
    """
    metric = evaluator.new_metrics(data.num_items).to(device)
    loader = evaluator.dataloader(data, split, rows=rows)
    with eval_mode(model.to(device)), torch.inference_mode():
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            evaluator.update(metric, model, batch)
    return {name: float(value) for name, value in metric.compute().items()}
