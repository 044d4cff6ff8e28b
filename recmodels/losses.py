"""Next-item losses for sequence models, selectable by name with :func:`make_loss`.

Every loss is called as ``loss(hidden, targets, items, bias=None)`` where

- ``hidden`` [N, d]: hidden states at the positions that have a target (padding removed,
  see :func:`select_targets`);
- ``targets`` [N]: item ids in ``0..num_items-1``;
- ``items``: the model's output item table [num_items, d] or a callable mapping item ids
  [...] to vectors [..., d] (models with an item encoder or sparse embeddings);
- ``bias``: optional per-item output bias [num_items] (BERT4Rec).

Only the full cross-entropy forms an [N, num_items] score matrix; sampled losses score
the sampled items only (for per-position negatives, :func:`_row_scores` picks the
cheaper of "gather vectors" and "score all then gather", never more than [N, num_items]).
A model with ``sparse_embeddings`` passes ``items`` as a lookup through its
``nn.Embedding(sparse=True)``, so the sampled losses' table gradient holds only the rows
they read; the full cross-entropy needs every row and refuses such a model.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from recmodels.cpu_products import product_nt
from recmodels.gathered_scores import gathered_scores

Items = Tensor | Callable[[Tensor], Tensor]
NEGATIVE_MODES = ("shared", "per_position")


def select_targets(hidden: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """hidden [B,L,d], targets [B,L] (-1 = none) -> (hidden [N,d], targets [N])."""
    if hidden.shape[:2] != targets.shape:
        raise ValueError(
            f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} disagree on [B, L]; "
            "build batches with the model's max_len so histories are not truncated"
        )
    positions = (targets.reshape(-1) >= 0).nonzero().squeeze(1)
    # index_select rather than boolean indexing: a much cheaper backward (index_add).
    return hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions), targets.reshape(-1)[positions]


def _embed(items: Items, ids: Tensor) -> Tensor:
    if isinstance(items, Tensor):  # index_select: cheaper backward than advanced indexing
        return items.index_select(0, ids.reshape(-1)).view(*ids.shape, items.shape[1])
    return items(ids)


def _table(items: Items, num_items: int, device: torch.device) -> Tensor:
    if isinstance(items, Tensor):
        return items
    return items(torch.arange(num_items, device=device))


def _row_scores(hidden: Tensor, ids: Tensor, items: Items, bias: Tensor | None) -> Tensor:
    """Scores of per-row items: hidden [N,d], ids [N,k] -> [N,k]."""
    n, k = ids.shape
    if isinstance(items, Tensor) and k * hidden.shape[1] > items.shape[0]:
        # Gathering [N,k,d] vectors would exceed scoring the catalogue [N,I].
        rows = auto_chunk_rows(n, items.shape[0], hidden.device.type)
        streamable = hidden.dtype == items.dtype == torch.float32 and not torch.is_autocast_enabled(
            hidden.device.type
        )
        if rows and streamable:  # CPU: never form [N, I]; see recmodels/gathered_scores.py
            scores = gathered_scores(hidden, items, ids, rows)
        else:
            scores = (hidden @ items.T).gather(1, ids)
    elif k <= 16:  # few items per row: a broadcast product beats many tiny matmuls
        scores = (_embed(items, ids) * hidden.unsqueeze(1)).sum(2)
    else:
        scores = torch.bmm(_embed(items, ids), hidden.unsqueeze(2)).squeeze(2)
    return scores + bias[ids] if bias is not None else scores


def _uniform_negatives(
    targets: Tensor, num_items: int, k: int, exclude_positive: bool, generator: torch.Generator | None
) -> Tensor:
    """[N,k] uniform item ids; with exclusion, uniform over all items except the target."""
    n = targets.shape[0]
    if not exclude_positive:
        return torch.randint(num_items, (n, k), device=targets.device, generator=generator)
    draws = torch.randint(num_items - 1, (n, k), device=targets.device, generator=generator)
    return draws + (draws >= targets[:, None]).long()  # skip over the target id


class SequenceLoss(nn.Module):
    """Base: holds the catalogue size and an optional RNG for negative sampling."""

    def __init__(self, num_items: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if num_items < 2:
            raise ValueError(f"num_items must be at least 2 for a ranking loss; got {num_items}")
        self.num_items = num_items
        self.generator = generator

    def forward(
        self, hidden: Tensor, targets: Tensor, items: Items, bias: Tensor | None = None
    ) -> Tensor:
        raise NotImplementedError


class FullCrossEntropy(SequenceLoss):
    """Softmax cross-entropy over the whole catalogue (SASRec+, Klenitskiy & Vasilev 2023).

    Scores only the N target positions ([N, num_items], never [B, L, num_items]).
    ``chunk_rows``: ``"auto"`` streams the rows on CPU in blocks of 128 (see
    :class:`_StreamedCrossEntropy`: 2.5-5x faster there, O(128 x num_items) memory); on
    accelerators it uses one fused ``F.cross_entropy`` while the fp32 score matrix stays
    under :data:`FUSED_SCORES_BYTES`, and streams blocks of that size beyond (a large
    catalogue times a large batch would not fit). An int forces streaming with that
    block size, ``0`` forces the single-matrix path.
    """

    def __init__(
        self,
        num_items: int,
        chunk_rows: int | str = "auto",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items, generator)
        if chunk_rows != "auto" and (not isinstance(chunk_rows, int) or chunk_rows < 0):
            raise ValueError(f"chunk_rows must be 'auto' or an int >= 0; got {chunk_rows!r}")
        self.chunk_rows = chunk_rows

    def forward(self, hidden, targets, items, bias=None):
        table = _table(items, self.num_items, hidden.device)
        rows = self.chunk_rows
        if rows == "auto":
            rows = auto_chunk_rows(hidden.shape[0], self.num_items, hidden.device.type)
        if rows == 0:
            logits = hidden @ table.T
            if bias is not None:
                logits = logits + bias
            return F.cross_entropy(logits.float(), targets)
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        bias = bias.float() if bias is not None else None
        return _StreamedCrossEntropy.apply(hidden, table, bias, targets, rows, dtype)


FUSED_SCORES_BYTES = 2**30  # accelerators: one fused CE up to a 1 GiB fp32 score matrix


def auto_chunk_rows(rows: int, num_items: int, device_type: str) -> int:
    """Rows per streamed block for ``chunk_rows="auto"`` (0 = one fused matrix)."""
    if device_type == "cpu":
        return 128
    if rows * num_items * 4 <= FUSED_SCORES_BYTES:
        return 0
    return max(1, FUSED_SCORES_BYTES // (4 * num_items))


class _StreamedCrossEntropy(torch.autograd.Function):
    """mean_n [logsumexp_i (h_n.w_i + b_i) - (h_n.w_t + b_t)], computed in row blocks.

    Each block's scores are turned into softmax - onehot in place and multiplied into
    the gradients right away (in the forward pass, when gradients are needed), so the
    backward pass only rescales them. Three matmuls and one softmax per score in total,
    and no [N, num_items] allocation: on CPU the large transient buffers and extra
    passes over memory of the plain version cost more than the arithmetic.
    Matmuls run in ``dtype`` (the autocast dtype, e.g. bf16, else fp32); softmax,
    log-normalisers and gradient accumulation are always fp32.
    """

    @staticmethod
    def forward(ctx, hidden, table, bias, targets, rows, dtype):
        n, num_items = hidden.shape[0], table.shape[0]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        need_any = need_h or need_w or need_b
        device = hidden.device
        # Gradients are accumulated transposed ([d, n] and [d, items]): on CPU the
        # products then take oneDNN's fastest layout (recmodels/cpu_products.py).
        grad_h_t = torch.empty(hidden.shape[::-1], device=device) if need_h else None
        grad_w_t = torch.zeros(table.shape[::-1], device=device) if need_w else None
        grad_b = torch.zeros(num_items, device=device) if need_b else None
        picked = torch.empty(n, 1, device=device)  # softmax probability of each target
        with torch.autocast(device.type, enabled=False):
            h, w = hidden.detach().to(dtype), table.detach().to(dtype)
            w_t = w.T.contiguous() if need_h else None
            b = bias.detach() if bias is not None else None
            block_rows = min(rows, n)
            # One block buffer for all blocks where the product can write into it: a fresh
            # [rows, num_items] per block costs an allocation (and page faults).
            block = torch.empty(block_rows, num_items, device=device)
            minus_one = torch.full((block_rows, 1), -1.0, device=device)
            target_col = targets[:, None]
            for start in range(0, n, rows):
                stop = min(start + rows, n)
                hb, tb = h[start:stop], target_col[start:stop]
                probs = _block_softmax(block[: stop - start], hb, w, b, dtype)
                torch.gather(probs, 1, tb, out=picked[start:stop])
                if not need_any:
                    continue
                probs.scatter_add_(1, tb, minus_one[: stop - start])  # softmax - onehot
                if need_b:
                    grad_b.add_(probs.sum(0))
                probs = probs.to(dtype)
                if need_h:
                    grad_h_t[:, start:stop] = product_nt(w_t, probs)  # (probs @ w)^T
                if need_w:
                    grad_w_t += product_nt(hb.T, probs.T)  # (probs^T @ hb)^T
            total = _target_nll(picked.squeeze(1), hidden.detach(), table.detach(), b, targets).sum(
                dtype=torch.float64
            )
        grad_h = grad_h_t.T.contiguous() if need_h else None
        grad_w = grad_w_t.T.contiguous() if need_w else None
        ctx.n = n
        ctx.dtypes = (hidden.dtype, table.dtype)
        ctx.save_for_backward(
            *(g if g is not None else torch.empty(0) for g in (grad_h, grad_w, grad_b))
        )
        ctx.needs = (need_h, need_w, need_b)
        return (total / n).float()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        scale = grad / ctx.n
        grads = [g * scale if need else None for g, need in zip(ctx.saved_tensors, ctx.needs)]
        if grads[0] is not None:
            grads[0] = grads[0].to(ctx.dtypes[0])
        if grads[1] is not None:
            grads[1] = grads[1].to(ctx.dtypes[1])
        return grads[0], grads[1], grads[2], None, None, None


def _block_softmax(
    block: Tensor, hidden: Tensor, table: Tensor, bias: Tensor | None, dtype: torch.dtype
) -> Tensor:
    """softmax(hidden @ table^T + bias) of one block of rows, in ``block`` or a fresh tensor.

    fp32 scores come from one product (:func:`~recmodels.cpu_products.product_nt`), and
    are normalised in place by one fused softmax kernel (torch's row-wise CPU softmax
    reads each row before writing it, so in place is exact; the loss and gradient tests
    check it against autograd).
    """
    if dtype == torch.float32:
        scores = product_nt(hidden, table, bias, out=block)
    else:
        scores = block.copy_(torch.mm(hidden, table.T))
        if bias is not None:
            scores.add_(bias)
    return torch.softmax(scores, dim=1, out=scores)


def _target_nll(
    picked: Tensor, hidden: Tensor, table: Tensor, bias: Tensor | None, targets: Tensor
) -> Tensor:
    """-log softmax(scores)[target] per row, from the target's softmax probability.

    Where that probability is too small for its logarithm to be accurate in fp32 (below
    1e-30, or zero), the row is rescored in fp32 and its value recomputed as
    logsumexp - target score, so the loss stays exact for hopeless rows too. Checked once
    per batch, after the blocks: the rare rows cost one small product, and the blocks
    never wait on the check.
    """
    nll = -picked.log()
    tiny = picked < 1e-30
    if tiny.any():
        rows = tiny.nonzero().squeeze(1)
        scores = hidden[rows].float() @ table.float().T
        if bias is not None:
            scores = scores + bias
        target_scores = scores.gather(1, targets[rows][:, None]).squeeze(1)
        nll[rows] = torch.logsumexp(scores, dim=1) - target_scores
    return nll


class SigmoidLoss(SequenceLoss):
    """Shared core of BCE and gBCE: each target scored against ``num_negatives`` uniform
    negatives (drawn from the other items with ``exclude_positive``); subclasses only say
    how the positive's and the negatives' scores become a loss (:meth:`from_scores`)."""

    def __init__(
        self,
        num_items: int,
        num_negatives: int,
        exclude_positive: bool,
        generator: torch.Generator | None,
    ) -> None:
        super().__init__(num_items, generator)
        self.check_num_negatives(num_negatives)
        self.num_negatives = num_negatives
        self.exclude_positive = exclude_positive

    def check_num_negatives(self, num_negatives: int) -> None:
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1; got {num_negatives}")

    def sample_negatives(self, targets: Tensor) -> Tensor:
        """[N, num_negatives] uniform negatives (a seam tests can replace)."""
        return _uniform_negatives(
            targets, self.num_items, self.num_negatives, self.exclude_positive, self.generator
        )

    def forward(self, hidden, targets, items, bias=None):
        negatives = self.sample_negatives(targets)
        scores = _row_scores(hidden, torch.cat([targets[:, None], negatives], 1), items, bias)
        scores = scores.float()
        return self.from_scores(scores[:, 0], scores[:, 1:])

    def from_scores(self, positive: Tensor, negatives: Tensor) -> Tensor:
        """Loss from fp32 scores of the positives [N] and their negatives [N, k]."""
        raise NotImplementedError


class BinaryCrossEntropy(SigmoidLoss):
    """SASRec's loss: per target, -log s(x+) - sum_j log(1 - s(x-_j)), mean over targets.

    ``num_negatives`` uniform negatives per positive (1 in the paper). This is
    (k+1) x :class:`GeneralizedBCE` at t=0, written with ``softplus``.
    """

    def __init__(
        self,
        num_items: int,
        num_negatives: int = 1,
        exclude_positive: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items, num_negatives, exclude_positive, generator)

    def from_scores(self, positive: Tensor, negatives: Tensor) -> Tensor:
        # -log s(x) = softplus(-x); -log(1 - s(x)) = softplus(x)
        per_target = F.softplus(-positive) + F.softplus(negatives).sum(1)
        return per_target.mean()


class SampledSoftmax(SequenceLoss):
    """Softmax over the positive and M sampled negatives, with log-Q correction.

    Negatives are drawn with replacement from a proposal q (``"uniform"`` or
    ``"popularity"``: q_i proportional to (count_i + smoothing) ** power). Each logit
    s_j becomes s_j - log q_j (for the positive too), which corrects the sampled softmax
    towards the full softmax (bias vanishing as M grows; Bengio & Senecal 2008, Yi et al.
    2019). A negative equal to the row's positive ("accidental hit") is removed (-inf).

    ``negatives``: ``"shared"`` draws M items once per batch, scored by every position
    (one [N, M] matmul, cheap); ``"per_position"`` draws M items for each position, as
    HSTU's reference code does (more distinct negatives per step, at the cost of scoring
    N x M pairs).
    """

    def __init__(
        self,
        num_items: int,
        num_negatives: int = 256,
        proposal: str = "uniform",
        item_counts: Tensor | np.ndarray | None = None,
        power: float = 1.0,
        smoothing: float = 1.0,
        negatives: str = "shared",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items, generator)
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1; got {num_negatives}")
        if negatives not in NEGATIVE_MODES:
            raise ValueError(
                f"model.task.loss.negatives={negatives!r} is unknown; choose one of {list(NEGATIVE_MODES)}"
            )
        self.num_negatives = num_negatives
        self.negatives = negatives
        self.proposal = proposal
        if proposal == "uniform":
            q = torch.full((num_items,), 1.0 / num_items, dtype=torch.float64)
        elif proposal == "popularity":
            if item_counts is None or len(item_counts) != num_items:
                raise ValueError(
                    "proposal='popularity' needs item_counts with one count per item "
                    f"(num_items={num_items}); pass InteractionData.item_popularity()"
                )
            weights = (torch.as_tensor(item_counts, dtype=torch.float64) + smoothing) ** power
            if not bool((weights > 0).all()):
                raise ValueError("popularity proposal has zero-probability items; use smoothing > 0")
            q = weights / weights.sum()
        else:
            raise ValueError(f"unknown proposal {proposal!r}; valid: ['uniform', 'popularity']")
        # Built once: drawing by binary search in the CDF costs O(M log num_items) per step,
        # where torch.multinomial would walk all num_items probabilities every step.
        cdf = q.cumsum(0)
        cdf[-1] = 1.0  # rounding must not leave a gap above the last item
        self.register_buffer("proposal_cdf", cdf, persistent=False)
        self.register_buffer("log_q", q.log().float(), persistent=False)

    def sample_negatives(self, device: torch.device, rows: int | None = None) -> Tensor:
        """Ids drawn from the proposal: [num_negatives] shared by the batch, or
        [rows, num_negatives] (one set per position) when ``rows`` is given."""
        shape = (self.num_negatives,) if rows is None else (rows, self.num_negatives)
        if self.proposal == "uniform":
            return torch.randint(self.num_items, shape, device=device, generator=self.generator)
        cdf = self.proposal_cdf.to(device)
        uniform = torch.rand(shape, device=device, dtype=torch.float64, generator=self.generator)
        # First item whose cumulative probability exceeds u: item i with probability q_i.
        return torch.searchsorted(cdf, uniform, right=True).clamp_(max=self.num_items - 1)

    def forward(self, hidden, targets, items, bias=None):
        if self.negatives == "per_position":
            return self._per_position(hidden, targets, items, bias)
        negatives = self.sample_negatives(hidden.device)
        # One lookup of positives and negatives: with a sparse table, one row-wise gradient.
        vectors = _embed(items, torch.cat([targets, negatives]))
        neg_scores = hidden @ vectors[targets.shape[0] :].T  # [N, M]
        pos_scores = (hidden * vectors[: targets.shape[0]]).sum(1, keepdim=True)  # [N, 1]
        if bias is not None:
            neg_scores = neg_scores + bias[negatives]
            pos_scores = pos_scores + bias[targets, None]
        log_q = self.log_q.to(hidden.device)
        neg_scores = (neg_scores.float() - log_q[negatives]).masked_fill(
            negatives[None, :] == targets[:, None], float("-inf")
        )
        pos_scores = pos_scores.float() - log_q[targets, None]
        logits = torch.cat([pos_scores, neg_scores], dim=1)
        return -F.log_softmax(logits, dim=1)[:, 0].mean()

    def _per_position(self, hidden: Tensor, targets: Tensor, items: Items, bias: Tensor | None) -> Tensor:
        negatives = self.sample_negatives(hidden.device, targets.shape[0])  # [N, M]
        # Positive in column 0; one scoring call, so a sparse table sees one lookup.
        ids = torch.cat([targets[:, None], negatives], dim=1)
        logits = _row_scores(hidden, ids, items, bias).float() - self.log_q.to(hidden.device)[ids]
        hits = torch.cat([torch.zeros_like(targets[:, None], dtype=torch.bool), negatives == targets[:, None]], 1)
        return -F.log_softmax(logits.masked_fill(hits, float("-inf")), dim=1)[:, 0].mean()


class GeneralizedBCE(SigmoidLoss):
    """gBCE of gSASRec (Petrov & Macdonald, RecSys 2023), with k uniform negatives.

    With sampling rate alpha = k / (|I| - 1) and calibration t in [0, 1]:

        beta   = alpha * (t * (1 - 1/alpha) + 1/alpha)
        L_gBCE = -1/(k+1) * ( log(sigmoid(s+) ** beta) + sum_j log(1 - sigmoid(s-_j)) )

    averaged over target positions; log(sigmoid(s) ** beta) = beta * logsigmoid(s) is used
    for stability. t=0 gives beta=1 (:class:`BinaryCrossEntropy` divided by k+1); t=1
    gives beta=alpha. Negatives are drawn uniformly from the items other than the positive.
    """

    def __init__(
        self,
        num_items: int,
        num_negatives: int = 256,
        t: float = 0.75,
        exclude_positive: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(num_items, num_negatives, exclude_positive, generator)
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"gBCE calibration t must lie in [0, 1]; got {t}")
        self.t = t
        alpha = num_negatives / (num_items - 1)
        self.alpha = alpha
        self.beta = alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)

    def check_num_negatives(self, num_negatives: int) -> None:
        """The sampling rate alpha = k / (|I| - 1) must not exceed 1."""
        if not 1 <= num_negatives <= self.num_items - 1:
            raise ValueError(
                f"num_negatives must be in 1..num_items-1={self.num_items - 1}; got {num_negatives}"
            )

    def from_scores(self, positive: Tensor, negatives: Tensor) -> Tensor:
        per_target = self.beta * F.logsigmoid(positive) + F.logsigmoid(-negatives).sum(1)
        return -(per_target / (self.num_negatives + 1)).mean()


LOSSES: dict[str, type[SequenceLoss]] = {
    "bce": BinaryCrossEntropy,
    "ce": FullCrossEntropy,
    "sampled_softmax": SampledSoftmax,
    "gbce": GeneralizedBCE,
}


def loss_options(loss_config: Mapping[str, Any]) -> dict[str, Any]:
    """The options a loss config sets: every key but ``name``, a null counting as unset (the
    loss's own default), so a config file can clear options another loss left behind."""
    return {key: value for key, value in loss_config.items() if key != "name" and value is not None}


def make_loss(name: str, num_items: int, **kwargs) -> SequenceLoss:
    """Build a loss by name (``bce``, ``ce``, ``sampled_softmax``, ``gbce``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}")
    try:
        return LOSSES[name](num_items, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for loss {name!r}: {err}") from err


def sequence_loss(model: nn.Module, batch: dict[str, Tensor], loss: SequenceLoss) -> Tensor:
    """One training loss for SASRec/BERT4Rec on a collated batch ("history", "targets")."""
    if isinstance(loss, FullCrossEntropy) and getattr(model, "sparse_embeddings", False):
        raise ValueError(
            "loss 'ce' scores every item at every step, so its table gradient is whole-catalogue "
            "and sparse_embeddings=true would only make it slower; use a sampled loss "
            "(model.task.loss.name=sampled_softmax, bce or gbce) or model.net.sparse_embeddings=false"
        )
    hidden, targets = select_targets(model(batch["history"]), batch["targets"])
    return loss(hidden, targets, model.output_items(), getattr(model, "output_bias", None))


__all__ = [
    "Items",
    "LOSSES",
    "SequenceLoss",
    "FullCrossEntropy",
    "SigmoidLoss",
    "BinaryCrossEntropy",
    "SampledSoftmax",
    "GeneralizedBCE",
    "make_loss",
    "select_targets",
    "sequence_loss",
]
