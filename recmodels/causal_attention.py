"""Causal self-attention for CPU training, in query chunks with plain batched products.

torch's CPU flash kernel, at SASRec's shapes (one head of 50 dimensions, up to 200
positions), ran forward and backward at about 38 GFLOP/s of the products attention
needs, on a machine whose products reach 200. Here the query rows are cut into chunks,
each chunk attends only to the keys up to its own last row, and every product is one
``bmm``: the scores of a chunk, their softmax (kept for the backward pass, so nothing is
recomputed), and the four products of the backward pass. With two chunks the products
cover 3/4 of the score square instead of all of it. Forward plus backward, from the
fused projection to its gradient, took 12 ms against flash's 15-18 ms for 50 rows of
200 positions (2 threads), 3.3-3.6 against 4.1-4.3 ms at 100 positions and 1.2 against
1.4-1.6 ms at 50; with longer rows and more heads too (16 rows of 512 positions, one head
of 50 or two of 32: 20.5 and 27.5 against 31.6 and 41.3 ms; 8 rows of 1,024: 35.9
against 39.8 ms). Together with the packed length groups (recmodels/causal_packing.py),
SASRec's training steps took 5.6% less time, the encoder's forward 5% and its backward
12% less (alternated with the previous path in one process; docs/performance.md).

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


def fits(qkv: Tensor, heads: int, dropout_p: float) -> bool:
    """Whether :func:`causal_attention` should replace the fused kernel for this call."""
    batch, length, _ = qkv.shape
    return (
        torch.is_grad_enabled()
        and not torch.jit.is_tracing()  # an exported graph keeps the standard op
        and qkv.requires_grad
        and dropout_p == 0.0
        and qkv.device.type == "cpu"
        and qkv.dtype == torch.float32
        and saved_floats(batch * heads, length) * 4 <= SAVED_BYTES_LIMIT
    )


def causal_attention(qkv: Tensor, heads: int) -> Tensor:
    """Causal attention from a fused projection: [B, L, 3d] (q, k, v, each ``heads`` x d/heads)
    -> [B, L, d], heads merged; scale 1/sqrt(d/heads), as SDPA's default.

    With one head the projection is used as it is, and its gradient comes back in its
    layout (one concatenation), with no copies around the op.
    """
    batch, length, width = qkv.shape
    head_dim = width // (3 * heads)
    if heads == 1:
        out, _ = torch.ops.recflow.chunked_causal_attention(qkv)
        return out
    per_head = qkv.view(batch, length, 3, heads, head_dim).permute(0, 3, 1, 2, 4)
    out, _ = torch.ops.recflow.chunked_causal_attention(per_head.reshape(batch * heads, length, 3 * head_dim))
    return out.view(batch, heads, length, head_dim).transpose(1, 2).reshape(batch, length, heads * head_dim)


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


def _split(qkv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v: [N, L, dh] views of one [N, L, 3 dh] projection (``bmm`` reads the row
    stride; contiguous copies measured slower)."""
    return qkv.chunk(3, dim=-1)


@torch.library.custom_op("recflow::chunked_causal_attention", mutates_args=())
def _forward(qkv: Tensor) -> tuple[Tensor, Tensor]:
    q, k, v = _split(qkv)
    batch, length, dim = q.shape
    scale = dim**-0.5
    future = _blocked_future(max(b - a for a, b in chunk_bounds(length)))
    probs = q.new_empty(saved_floats(batch, length))
    outputs = []
    for a, b, p in _chunk_views(probs, batch, length):
        torch.baddbmm(p, q[:, a:b], k[:, :b].transpose(1, 2), beta=0.0, alpha=scale, out=p)
        p[:, :, a:].add_(future[: b - a, : b - a])  # only the chunk's own keys can lie ahead
        torch.softmax(p, dim=-1, out=p)
        outputs.append(torch.bmm(p, v[:, :b]))
    return torch.cat(outputs, dim=1), probs


@_forward.register_fake
def _(qkv):
    batch, length, width = qkv.shape
    return qkv.new_empty(batch, length, width // 3), qkv.new_empty(saved_floats(batch, length))


@torch.library.custom_op("recflow::chunked_causal_attention_backward", mutates_args=())
def _backward(grad: Tensor, qkv: Tensor, probs: Tensor) -> Tensor:
    q, k, v = _split(qkv)
    batch, length, dim = q.shape
    scale = dim**-0.5
    grad = grad.contiguous()
    grad_q = torch.empty_like(q, memory_format=torch.contiguous_format)
    grad_k = grad_v = None
    # Last chunk first: it sees every key, so its key and value gradients start the
    # sums as fresh contiguous products; earlier chunks add to a prefix of them.
    for a, b, p in reversed(_chunk_views(probs, batch, length)):
        g = grad[:, a:b]
        chunk_grad_v = torch.bmm(p.transpose(1, 2), g)
        grad_p = torch.bmm(g, v[:, :b].transpose(1, 2))
        grad_s = torch._softmax_backward_data(grad_p, p, -1, p.dtype).mul_(scale)
        grad_q[:, a:b] = torch.bmm(grad_s, k[:, :b])
        chunk_grad_k = torch.bmm(grad_s.transpose(1, 2), q[:, a:b])
        if grad_v is None:
            grad_k, grad_v = chunk_grad_k, chunk_grad_v
        else:
            grad_k[:, :b] += chunk_grad_k
            grad_v[:, :b] += chunk_grad_v
    return torch.cat([grad_q, grad_k, grad_v], dim=-1)  # the projection's layout


@_backward.register_fake
def _(grad, qkv, probs):
    return torch.empty_like(qkv)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], output[1])
    ctx.set_materialize_grads(False)  # the kept softmax gets no gradient: no zeros for it


def _autograd_backward(ctx, grad_out: Tensor, grad_probs: Tensor | None) -> Tensor:
    if grad_out is None:  # the output was not used
        return None
    qkv, probs = ctx.saved_tensors
    return torch.ops.recflow.chunked_causal_attention_backward(grad_out, qkv, probs)


_forward.register_autograd(_autograd_backward, setup_context=_setup_context)
