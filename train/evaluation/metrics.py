"""Ranking metrics with one held-out target per evaluated row.

Every state is a sum or a count reduced with ``"sum"``, so merging the states of
several processes (or shards) gives exactly the metrics of the whole split: no
averaging of averages, no padding rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

METRIC_NAMES = ("hr", "recall", "ndcg", "mrr", "precision", "f1", "coverage")
DEFAULT_METRICS = ("hr", "ndcg", "mrr", "precision", "f1", "coverage")


def pessimistic_rank(scores: Tensor, target_col: Tensor) -> Tensor:
    """0-based rank of each row's target among that row's candidates.

    Tie policy (pessimistic): rank = number of *other* candidates whose score is
    ``>=`` the target's score, so a tie never ranks the target above a negative.
    A model that gives every item the same score therefore gets the worst rank,
    not a lucky one. Masked items must already be ``-inf`` (they then tie only
    with a target that is itself ``-inf``, and count against it).

    Raises ``ValueError`` on NaN scores: a NaN compares false with everything and
    would silently rank the target first.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, C], got shape {tuple(scores.shape)}")
    if target_col.shape != scores.shape[:1]:
        raise ValueError(
            f"target_col must be [B]={scores.shape[0]}, got shape {tuple(target_col.shape)}"
        )
    # amax propagates NaN: one cheap pass instead of materialising an isnan mask.
    if torch.isnan(scores.amax(dim=1)).any():
        bad = int(torch.isnan(scores).any(dim=1).sum())
        raise ValueError(f"NaN scores in {bad} of {scores.shape[0]} rows: check the model outputs")
    target = scores.gather(1, target_col.long().unsqueeze(1))
    return (scores >= target).sum(dim=1) - 1


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks:
        raise ValueError("ks must list at least one cutoff, e.g. ks=[10]")
    bad = [k for k in ks if k <= 0]
    if bad:
        raise ValueError(f"every cutoff k must be positive, got {bad} in ks={list(ks)}")
    return tuple(sorted(set(ks)))


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    metrics = tuple(str(m).lower() for m in metrics)
    unknown = sorted(set(metrics) - set(METRIC_NAMES))
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRIC_NAMES)}")
    if not metrics:
        raise ValueError(f"metrics must not be empty; choose from {list(METRIC_NAMES)}")
    return metrics


class RankingMetrics(Metric):
    """HR/Recall, NDCG, MRR, Precision, F1 at each cutoff, full MRR, catalogue coverage.

    With one target per row, per-row Recall@k equals the hit indicator and
    Precision@k equals hit/k, so F1@k = 2*P*R/(P+R) = 2*hit/(k+1); averaging per
    row and combining the averaged P and R give the same number.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        ks: Sequence[int] = (10,),
        *,
        num_items: int,
        metrics: Sequence[str] = DEFAULT_METRICS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.ks = check_ks(ks)
        self.metrics = check_metrics(metrics)
        if int(num_items) <= 0:
            raise ValueError(f"num_items must be positive, got {num_items}")
        self.num_items = int(num_items)
        self.max_k = max(self.ks)
        n_k = len(self.ks)
        f64 = torch.float64
        self.add_state("count", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
        self.add_state("hits", torch.zeros(n_k, dtype=f64), dist_reduce_fx="sum")
        self.add_state("ndcg_sum", torch.zeros(n_k, dtype=f64), dist_reduce_fx="sum")
        self.add_state("rr_at_k_sum", torch.zeros(n_k, dtype=f64), dist_reduce_fx="sum")
        self.add_state("rr_sum", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
        if "coverage" in self.metrics:
            # How often each item appeared in a top-k list; > 0 means "covered".
            self.add_state(
                "item_counts",
                torch.zeros(n_k, self.num_items, dtype=torch.long),
                dist_reduce_fx="sum",
            )
        self.register_buffer("_k_tensor", torch.tensor(self.ks), persistent=False)

    _SUMS = ("count", "hits", "ndcg_sum", "rr_at_k_sum", "rr_sum")

    def _apply(self, fn, *args, **kwargs):  # type: ignore[override]
        """Keep the sums in float64 whatever a precision plugin does: ``module.to(bf16)``
        would otherwise round them (bf16 cannot even count past 256 exactly)."""
        this = super()._apply(fn, *args, **kwargs)
        for name in self._SUMS:
            if getattr(this, name).dtype != torch.float64:
                setattr(this, name, getattr(this, name).double())
                this._defaults[name] = this._defaults[name].double()
        return this

    def update(self, ranks: Tensor, topk_items: Tensor | None = None) -> None:
        """Add a batch: ``ranks`` [B] 0-based pessimistic target ranks, ``topk_items``
        [B, >=max_k] the recommended items in order (entries < 0 are ignored), needed
        only for coverage."""
        if ranks.dim() != 1:
            raise ValueError(f"ranks must be [B], got shape {tuple(ranks.shape)}")
        ranks = ranks.to(self.hits.device, self.hits.dtype)
        ks = self._k_tensor.to(ranks.device, ranks.dtype)
        hit = ranks.unsqueeze(1) < ks.unsqueeze(0)  # [B, K]
        rr = 1.0 / (ranks + 1.0)
        gain = 1.0 / torch.log2(ranks + 2.0)
        self.count += ranks.numel()
        self.hits += hit.sum(dim=0, dtype=ranks.dtype)
        self.ndcg_sum += (gain.unsqueeze(1) * hit).sum(dim=0)
        self.rr_at_k_sum += (rr.unsqueeze(1) * hit).sum(dim=0)
        self.rr_sum += rr.sum()
        if "coverage" in self.metrics:
            self._update_coverage(topk_items, ranks.numel())

    def _update_coverage(self, topk_items: Tensor | None, batch: int) -> None:
        if topk_items is None:
            raise ValueError("coverage needs topk_items [B, max_k]; pass them or drop 'coverage'")
        if topk_items.dim() != 2 or topk_items.shape[0] != batch or topk_items.shape[1] < self.max_k:
            raise ValueError(
                f"topk_items must be [B={batch}, >={self.max_k}], got {tuple(topk_items.shape)}"
            )
        if batch == 0:
            return
        topk_items = topk_items.to(self.item_counts.device).long()
        if int(topk_items.max()) >= self.num_items:
            raise ValueError(f"topk_items holds an item id >= num_items={self.num_items}")
        # One bincount for all cutoffs: position p of a list falls in bucket j when
        # ks[j-1] <= p < ks[j]; a cumulative sum over buckets gives the top-k counts.
        # Missing entries (< 0) go to a spare column that is dropped.
        n_k, n_cols = len(self.ks), self.num_items + 1
        positions = torch.arange(self.max_k, device=topk_items.device)
        bucket = torch.bucketize(positions, self._k_tensor.to(topk_items.device), right=True)
        items = topk_items[:, : self.max_k]
        items = torch.where(items >= 0, items, torch.full_like(items, self.num_items))
        flat = (bucket.unsqueeze(0) * n_cols + items).reshape(-1)
        counts = torch.bincount(flat, minlength=n_k * n_cols).view(n_k, n_cols)
        self.item_counts += counts[:, : self.num_items].cumsum(dim=0)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.clamp(min=1.0)
        out: dict[str, Tensor] = {}
        for i, k in enumerate(self.ks):
            hr = self.hits[i] / n
            if "hr" in self.metrics:
                out[f"hr@{k}"] = hr
            if "recall" in self.metrics:
                out[f"recall@{k}"] = hr
            if "ndcg" in self.metrics:
                out[f"ndcg@{k}"] = self.ndcg_sum[i] / n
            if "mrr" in self.metrics:
                out[f"mrr@{k}"] = self.rr_at_k_sum[i] / n
            if "precision" in self.metrics:
                out[f"precision@{k}"] = hr / k
            if "f1" in self.metrics:
                p = hr / k
                denom = p + hr
                out[f"f1@{k}"] = torch.where(denom > 0, 2 * p * hr / denom.clamp(min=1e-300), 0.0)
            if "coverage" in self.metrics:
                covered = (self.item_counts[i] > 0).sum(dtype=self.hits.dtype)
                out[f"coverage@{k}"] = covered / self.num_items
        if "mrr" in self.metrics:
            out["mrr"] = self.rr_sum / n
        return out

