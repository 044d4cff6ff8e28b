"""Scores of a few items per row, taken from the whole catalogue's scores one row block at a time.

``(hidden @ table.T).gather(1, ids)`` is the cheapest way to score k items per row when
k x d exceeds the catalogue size (a sampled loss with many per-position negatives on a
small catalogue), but done in one piece it forms an [N, num_items] matrix forward and a
zero-filled one of the same size backward: on CPU, passes over hundreds of MB that cost
more than the arithmetic. Here one [rows, num_items] buffer, small enough to stay in a
core's cache, is reused for every block, forward (scores, then gather) and backward
(scatter the row gradients into it, then the two products).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


def gathered_scores(hidden: Tensor, table: Tensor, ids: Tensor, rows: int) -> Tensor:
    """hidden [N,d], table [I,d], ids [N,k] -> [N,k] = (hidden @ table.T).gather(1, ids),
    computed in blocks of ``rows`` rows (fp32 tensors of one dtype and device)."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1; got {rows}")
    return _GatheredScores.apply(hidden, table, ids, rows)


class _GatheredScores(torch.autograd.Function):
    """Row-blocked (hidden @ table.T).gather(1, ids) with a row-blocked backward."""

    @staticmethod
    def forward(ctx, hidden: Tensor, table: Tensor, ids: Tensor, rows: int) -> Tensor:
        n = hidden.shape[0]
        out = torch.empty(ids.shape, dtype=hidden.dtype, device=hidden.device)
        block = torch.empty(min(rows, n), table.shape[0], dtype=hidden.dtype, device=hidden.device)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            scores = block[: stop - start]
            torch.mm(hidden[start:stop], table.T, out=scores)
            torch.gather(scores, 1, ids[start:stop], out=out[start:stop])
        ctx.save_for_backward(hidden, table, ids)
        ctx.rows = rows
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        hidden, table, ids = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[:2]
        grad = grad.contiguous()
        n, rows = hidden.shape[0], ctx.rows
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(table) if need_w else None
        block = torch.empty(min(rows, n), table.shape[0], dtype=grad.dtype, device=grad.device)
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            scores_grad = block[: stop - start].zero_()
            # scatter_add, not scatter: an item drawn twice for a row gets both gradients.
            scores_grad.scatter_add_(1, ids[start:stop], grad[start:stop])
            if need_h:
                torch.mm(scores_grad, table, out=grad_h[start:stop])
            if need_w:
                grad_w.addmm_(scores_grad.T, hidden[start:stop])
        return grad_h, grad_w, None, None
