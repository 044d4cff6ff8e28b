"""The one evaluator: validation, test, benchmarks and inference all rank through it.

Protocols:
- ``full``: score the whole catalogue, remove the items of the context history
  (except the target itself) and rank the target among everything left.
- ``sampled``: rank the target among ``N`` negatives per row (``uniform`` or
  ``popularity`` samples, fixed once per split by ``seed``, or ``given`` lists).

A split's context is what a model may see when predicting it
(:meth:`InteractionData.context_splits`: validation sees train, test sees
train + val). Ranks are pessimistic (see :func:`pessimistic_rank`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from data_modules.interactions import SPLIT_CODES, TEST, VAL, InteractionData
from recmodels.base import Recommender
from train.evaluation.batches import EvalRows, RangeBatches, shard_bounds
from train.evaluation.candidates import SAMPLERS, split_candidates
from train.evaluation.metrics import (
    DEFAULT_METRICS,
    RankingMetrics,
    check_ks,
    check_metrics,
    pessimistic_rank,
)

PROTOCOLS = ("full", "sampled")


def parse_split(split: int | str) -> int:
    """``"val"``/``"test"`` or their codes -> the code; anything else is an error."""
    code = SPLIT_CODES.get(split, split) if isinstance(split, str) else split
    if code not in (VAL, TEST):
        raise ValueError(f"can only evaluate split 'val' ({VAL}) or 'test' ({TEST}), got {split!r}")
    return int(code)


class Evaluator:
    """Builds evaluation batches and turns model scores into :class:`RankingMetrics` updates.

    ``num_negatives`` is the number of sampled negatives; with ``sampler="given"``
    the width of the given lists is used instead. Coverage needs whole-catalogue
    top-k lists, so the sampled protocol leaves it out.
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
    ) -> None:
        if val_sampler is not None and val_sampler not in SAMPLERS:
            raise ValueError(f"unknown eval.val_sampler '{val_sampler}'; choose from {list(SAMPLERS)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown eval.protocol '{protocol}'; choose from {list(PROTOCOLS)}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown eval.sampler '{sampler}'; choose from {list(SAMPLERS)}")
        for name, value in (("num_negatives", num_negatives), ("batch_size", batch_size),
                            ("max_history", max_history)):
            if int(value) <= 0:
                raise ValueError(f"eval.{name} must be positive, got {value}")
        if int(num_workers) < 0:
            raise ValueError(f"eval.num_workers must be >= 0, got {num_workers}")
        self.protocol, self.sampler = protocol, sampler
        # Data sets such as NCF's ship candidates for the test split only; validation
        # then draws its own (e.g. uniform) with the same list length.
        self.val_sampler = val_sampler or sampler
        self.ks = check_ks(ks)
        self.metrics = check_metrics(metrics)
        self.num_negatives, self.seed = int(num_negatives), int(seed)
        self.batch_size, self.max_history = int(batch_size), int(max_history)
        self.num_workers = int(num_workers)
        if protocol == "sampled" and sampler != "given" and max(self.ks) > self.num_negatives:
            raise ValueError(
                f"cutoff k={max(self.ks)} >= list length 1+{self.num_negatives}: every target "
                "would be a hit; use smaller eval.ks or more eval.num_negatives"
            )
        self._given_width: int | None = None
        self._cache: dict[tuple[int, int], tuple[InteractionData, np.ndarray]] = {}

    @property
    def protocol_name(self) -> str:
        """Short label for logs and result tables, e.g. ``sampled-popularity-100``."""
        if self.protocol == "full":
            return "full"
        if self.sampler == "given":
            return "sampled-given" + ("" if self._given_width is None else f"-{self._given_width}")
        return f"sampled-{self.sampler}-{self.num_negatives}"

    def new_metrics(self, num_items: int) -> RankingMetrics:
        """A fresh metric collection matching this protocol."""
        if self.protocol == "full" and max(self.ks) > num_items:
            raise ValueError(f"cutoff k={max(self.ks)} exceeds the catalogue ({num_items} items)")
        metrics = self.metrics
        if self.protocol == "sampled":
            metrics = tuple(m for m in metrics if m != "coverage") or ("hr",)
        return RankingMetrics(self.ks, num_items=num_items, metrics=metrics)

    def candidates(self, data: InteractionData, split: int) -> np.ndarray:
        """``[rows, 1+N]`` candidates of ``split`` (target first); computed once per split."""
        key = (id(data), split)
        cached = self._cache.get(key)
        if cached is None or cached[0] is not data:
            sampler = self.val_sampler if split == VAL else self.sampler
            cands = split_candidates(data, split, sampler, self.num_negatives, self.seed)
            cached = self._cache[key] = (data, cands)
        cands = cached[1]
        if self.sampler == "given" and split != VAL:
            self._given_width = cands.shape[1] - 1
            if max(self.ks) > self._given_width:
                raise ValueError(
                    f"cutoff k={max(self.ks)} >= list length {cands.shape[1]} of the given "
                    "negatives: every target would be a hit; use smaller eval.ks"
                )
        return cands

    def dataloader(
        self,
        data: InteractionData,
        split: int | str,
        rank: int = 0,
        world_size: int = 1,
        rows: np.ndarray | None = None,
    ) -> DataLoader:
        """Batches of this rank's contiguous share of ``split``'s rows (no padding, no drops).

        Use with ``Trainer(use_distributed_sampler=False)``: sharding is done here.
        ``rows`` (indices or a boolean mask over ``data.targets(split)``) evaluates a
        slice only, e.g. the rows whose target is a rarely seen item.
        """
        split = parse_split(split)
        users, targets = data.targets(split)
        context = data.histories(*data.context_splits(split))
        cands = self.candidates(data, split) if self.protocol == "sampled" else None
        if rows is not None:
            rows = _row_index(rows, len(users))
            users, targets = users[rows], targets[rows]
            cands = cands[rows] if cands is not None else None
        dataset = EvalRows(
            users, targets, context, self.max_history,
            candidates=cands, mask_known=self.protocol == "full",
        )
        lo, hi = shard_bounds(len(users), rank, world_size)
        return DataLoader(
            dataset,
            sampler=RangeBatches(lo, hi, self.batch_size),
            batch_size=None,  # the dataset returns whole batches
            num_workers=self.num_workers,
        )

    @torch.no_grad()
    def update(self, metric: RankingMetrics, model: Recommender, batch: dict[str, Tensor]) -> None:
        """Score one batch and add its ranks to ``metric``.

        ``model.score_all`` must return a fresh tensor: known items are masked in place.
        """
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
        # contiguous() copies broadcast views (e.g. one popularity row for all users),
        # which would otherwise share memory between users when masked in place.
        scores = model.score_all(context).float().contiguous()
        _check_shape(scores, (len(batch["target"]), metric.num_items), "score_all")
        mask_known(scores, batch["mask_rows"], batch["mask_items"])
        ranks = pessimistic_rank(scores, batch["target"])
        topk_items = None
        if "coverage" in metric.metrics:
            values, topk_items = torch.topk(scores, metric.max_k, dim=1)
            topk_items = topk_items.masked_fill(values == float("-inf"), -1)
        metric.update(ranks, topk_items)


def _row_index(rows: np.ndarray, num_rows: int) -> np.ndarray:
    """Row indices from indices or a boolean mask over a split's rows."""
    rows = np.asarray(rows)
    if rows.dtype == bool:
        if rows.shape != (num_rows,):
            raise ValueError(f"a boolean rows mask needs shape ({num_rows},), got {rows.shape}")
        return np.flatnonzero(rows)
    rows = rows.astype(np.int64, copy=False)
    if rows.size and (rows.min() < 0 or rows.max() >= num_rows):
        raise ValueError(f"rows must index 0..{num_rows - 1}; got {rows.min()}..{rows.max()}")
    return rows


def mask_known(scores: Tensor, rows: Tensor, items: Tensor) -> None:
    """Set scores[rows, items] = -inf in place (a flat index_fill_ is ~10x faster than
    a 2-D index_put_ on CPU)."""
    scores.view(-1).index_fill_(0, rows * scores.shape[1] + items, float("-inf"))


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
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                evaluator.update(metric, model, batch)
    finally:
        model.train(was_training)
    return {name: float(value) for name, value in metric.compute().items()}
