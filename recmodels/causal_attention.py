"""Causal self-attention for CPU training, in query chunks with plain batched products.

torch's CPU flash kernel, at SASRec's shapes (one head of 50 dimensions, up to 200
positions), ran forward and backward at about 38 GFLOP/s of the products attention
needs, on a machine whose products reach 200. Here the query rows are cut into chunks,
each chunk attends only to the keys up to its own last row, and every product is one
``bmm``: the scores of a chunk, their softmax (kept for the backward pass, so nothing is
recomputed), and the four products of the backward pass. With two chunks the products
cover 3/4 of the score square instead of all of it. Forward plus backward took 11.5 ms
against flash's 16.1 ms for 50 rows of 200 positions (2 threads), and 2.8 against 3.7 ms
at 100 positions.

The price is memory: the softmax of every chunk is kept, B x H x ~3/4 L^2 floats per
layer (15 MB for SASRec's batch of 128 at 200 positions). :func:`fits` keeps the flash
kernel where that would exceed :data:`SAVED_BYTES_LIMIT`, off CPU, in other dtypes,
without gradients (evaluation), with attention dropout, and in traces for export.

The pair of ops is registered with ``torch.library`` so FLOP counters and compilers see
one attention op (and count what attention needs), not the products inside it.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

CHUNK_ROWS = 100  # about this many query rows per chunk (2 chunks at 200 positions)
SAVED_BYTES_LIMIT = 256 * 2**20  # kept softmax per call; above it, the flash kernel


def chunk_bounds(length: int) -> list[tuple[int, int]]:
    """[(first row, end row)) of each query chunk: ``round(length / CHUNK_ROWS)`` near-equal chunks."""
    chunks = max(1, round(length / CHUNK_ROWS))
    edges = [round(length * i / chunks) for i in range(chunks + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def saved_floats(batch: int, length: int) -> int:
    """Softmax entries kept for the backward pass: each chunk's rows times its keys."""
    return batch * sum((b - a) * b for a, b in chunk_bounds(length))


def fits(q: Tensor, k: Tensor, v: Tensor, dropout_p: float) -> bool:
    """Whether :func:`causal_attention` should replace the fused kernel for this call."""
    batch, heads, length, _ = q.shape
    return (
        torch.is_grad_enabled()
        and not torch.jit.is_tracing()  # an exported graph keeps the standard op
        and any(t.requires_grad for t in (q, k, v))
        and dropout_p == 0.0
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (q, k, v))
        and k.shape == q.shape == v.shape
        and saved_floats(batch * heads, length) * 4 <= SAVED_BYTES_LIMIT
    )


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) v for [B, H, L, d] inputs (scale as SDPA's default)."""
    batch, heads, length, dim = q.shape
    flat = [t.reshape(batch * heads, length, dim) for t in (q, k, v)]
    out, _ = torch.ops.recflow.chunked_causal_attention(*flat)
    return out.view(batch, heads, length, dim)


@functools.lru_cache(maxsize=32)
def _blocked_future(length: int) -> Tensor:
    """[L, L] additive mask: -inf above the diagonal (a query never sees later keys)."""
    return torch.full((length, length), float("-inf")).triu(1)


def _chunk_views(probs: Tensor, batch: int, length: int) -> list[tuple[int, int, Tensor]]:
    """Each chunk's [batch, rows, keys] softmax as a view of the one flat buffer."""
    views, offset = [], 0
    for a, b in chunk_bounds(length):
        size = batch * (b - a) * b
        views.append((a, b, probs[offset : offset + size].view(batch, b - a, b)))
        offset += size
    return views


@torch.library.custom_op("recflow::chunked_causal_attention", mutates_args=())
def _forward(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    batch, length, dim = q.shape
    scale = dim**-0.5
    future = _blocked_future(length)
    probs = q.new_empty(saved_floats(batch, length))
    outputs = []
    for a, b, p in _chunk_views(probs, batch, length):
        torch.baddbmm(future[a:b, :b], q[:, a:b], k[:, :b].transpose(1, 2), alpha=scale, out=p)
        torch.softmax(p, dim=-1, out=p)
        outputs.append(torch.bmm(p, v[:, :b]))
    return torch.cat(outputs, dim=1), probs


@_forward.register_fake
def _(q, k, v):
    return torch.empty_like(q), q.new_empty(saved_floats(q.shape[0], q.shape[1]))


@torch.library.custom_op("recflow::chunked_causal_attention_backward", mutates_args=())
def _backward(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, probs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    batch, length, dim = q.shape
    scale = dim**-0.5
    grad = grad.contiguous()
    grad_q = torch.empty_like(q, memory_format=torch.contiguous_format)
    grad_k = torch.zeros_like(k, memory_format=torch.contiguous_format)
    grad_v = torch.zeros_like(v, memory_format=torch.contiguous_format)
    for a, b, p in _chunk_views(probs, batch, length):
        g = grad[:, a:b]
        grad_v[:, :b].baddbmm_(p.transpose(1, 2), g)
        grad_p = torch.bmm(g, v[:, :b].transpose(1, 2))
        grad_s = torch._softmax_backward_data(grad_p, p, -1, p.dtype).mul_(scale)
        grad_q[:, a:b] = torch.bmm(grad_s, k[:, :b])
        grad_k[:, :b].baddbmm_(grad_s.transpose(1, 2), q[:, a:b])
    return grad_q, grad_k, grad_v


@_backward.register_fake
def _(grad, q, k, v, probs):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs, output[1])


def _autograd_backward(ctx, grad_out: Tensor, grad_probs: Tensor | None):
    q, k, v, probs = ctx.saved_tensors
    return torch.ops.recflow.chunked_causal_attention_backward(grad_out, q, k, v, probs)


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)
