"""The HSTU encoder: pointwise aggregated attention with a gate, stacked causally.

One layer (Zhai et al., ICML 2024, section 3.1), on a residual stream ``x`` [B, L, d]:

    U, V, Q, K = split(SiLU(LayerNorm(x) W))                 # one fused projection
    A          = SiLU(Q K^T + rab) * causal_mask / n         # no softmax: pointwise
    x'         = x + f2(dropout(LayerNorm(A V) * U))

``rab`` is a learned bias per distance ``i - j`` (one table per layer); ``n`` is the
constant ``max_len`` rather than the row's length, so a row's output does not depend on
how much padding its batch carries. Layer norms have no affine part (as the authors').

Masked scores are replaced by a large negative number before SiLU, which SiLU turns into
an exact zero (and a zero gradient): one fused ``baddbmm`` adds bias and mask to Q K^T.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recmodels.transformer import Dropout, encode_by_length

# SiLU(-30000) and its derivative are exactly 0 in fp32, bf16 and fp16.
MASKED_SCORE = -30000.0
LAYER_NORM_EPS = 1e-6


class RelativePositionBias(nn.Module):
    """A learned scalar per distance ``i - j`` in ``0..max_len-1`` (causal: keys never
    lie ahead of their query, so negative distances need no entries)."""

    def __init__(self, max_len: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(max_len))

    def forward(self, length: int) -> Tensor:
        """[length, length] bias; entries above the diagonal are arbitrary (masked later)."""
        positions = torch.arange(length, device=self.weight.device)
        distance = (positions[:, None] - positions[None, :]).clamp_min(0)
        return self.weight.index_select(0, distance.reshape(-1)).view(length, length)


def causal_blocks(length: int, block: int) -> list[tuple[int, int]]:
    """Query ranges [start, stop) of about ``block`` rows covering ``0..length``.

    Queries in [start, stop) see keys before ``stop`` only, so each range is scored
    against that prefix of the keys: with n ranges, (n + 1) / 2n of the full L x L
    scores (L=200, n=3: 67%), and smaller intermediates that stay in cache.
    """
    length = int(length)  # export traces see a fixed length: the ranges are constants there
    count = max(1, (2 * length + block) // (2 * block))  # length / block, rounded half up
    bounds = [length * i // count for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class PointwiseAttention(nn.Module):
    """SiLU(Q K^T + rab + mask) V / n, per head, with n = ``max_len``.

    Scored in blocks of ``query_block`` queries against the keys they can see
    (:func:`causal_blocks`), so the masked upper triangle is mostly never formed. On
    accelerators, where each block costs kernel launches a short sequence cannot repay,
    blocks are ``accelerator_query_block`` rows (512: one block up to length 767).
    """

    def __init__(
        self,
        num_heads: int,
        attention_dim: int,
        linear_dim: int,
        max_len: int,
        query_block: int = 64,
        accelerator_query_block: int = 512,
    ) -> None:
        super().__init__()
        if query_block < 1 or accelerator_query_block < 1:
            raise ValueError(
                f"query_block and accelerator_query_block must be >= 1; got {query_block}, {accelerator_query_block}"
            )
        self.num_heads = num_heads
        self.attention_dim = attention_dim
        self.linear_dim = linear_dim
        self.max_len = max_len
        self.query_block = query_block
        self.accelerator_query_block = accelerator_query_block
        self.rel_bias = RelativePositionBias(max_len)

    def block_rows(self, device: torch.device) -> int:
        """Queries per causal block on ``device``."""
        return self.query_block if device.type == "cpu" else self.accelerator_query_block

    def forward(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """q, k [B,L,H*dqk], v [B,L,H*dv], additive mask [B or 1,L,L] -> [B,L,H*dv]."""
        batch, length, _ = q.shape
        q, k = (self._split_heads(t, self.attention_dim) for t in (q, k))
        v = self._split_heads(v, self.linear_dim)
        bias = self.rel_bias(length)
        blocks = [
            self._attend(q[:, start:stop], k[:, :stop], v[:, :stop],
                         mask[:, start:stop, :stop] + bias[start:stop, :stop])
            for start, stop in causal_blocks(length, self.block_rows(q.device))
        ]
        out = torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]
        out = out.view(batch, self.num_heads, length, self.linear_dim).transpose(1, 2)
        return out.reshape(batch, length, self.num_heads * self.linear_dim) / self.max_len

    def _split_heads(self, x: Tensor, dim: int) -> Tensor:
        """[B,L,H*dim] -> [B*H,L,dim]."""
        batch, length, _ = x.shape
        heads = x.view(batch, length, self.num_heads, dim).transpose(1, 2)
        return heads.reshape(batch * self.num_heads, length, dim)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor) -> Tensor:
        """q [B*H,Lq,dqk], k [B*H,Lk,dqk], v [B*H,Lk,dv], bias [B or 1,Lq,Lk] -> [B*H,Lq,dv]."""
        rows, queries, keys = q.shape[0], q.shape[1], k.shape[1]
        batch = rows // self.num_heads
        bias = bias[:, None].expand(batch, self.num_heads, queries, keys).reshape(rows, queries, keys)
        scores = torch.baddbmm(bias, q, k.transpose(1, 2))
        return torch.bmm(F.silu(scores), v)


class HSTULayer(nn.Module):
    """One sequential transduction unit: projection, pointwise attention, gate, residual."""

    def __init__(
        self, dim: int, num_heads: int, attention_dim: int, linear_dim: int, max_len: int, dropout: float
    ) -> None:
        super().__init__()
        self.dim = dim
        self.splits = [num_heads * linear_dim, num_heads * linear_dim, num_heads * attention_dim,
                       num_heads * attention_dim]
        self.uvqk = nn.Linear(dim, sum(self.splits), bias=False)
        self.attn = PointwiseAttention(num_heads, attention_dim, linear_dim, max_len)
        self.drop = Dropout(dropout)
        self.out = nn.Linear(num_heads * linear_dim, dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        normed = F.layer_norm(x, (self.dim,), eps=LAYER_NORM_EPS)
        u, v, q, k = F.silu(self.uvqk(normed)).split(self.splits, dim=-1)
        attended = self.attn(q, k, v, mask)
        gated = u * F.layer_norm(attended, (self.splits[0],), eps=LAYER_NORM_EPS)
        return x + self.out(self.drop(gated))

    def reset_parameters(self) -> None:
        """The authors' initialisation: projection N(0, 0.02), output Xavier, bias 0."""
        nn.init.normal_(self.uvqk.weight, std=0.02)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        nn.init.normal_(self.attn.rel_bias.weight, std=0.02)


class HSTUEncoder(nn.Module):
    """Learned right-aligned positions + HSTU layers over item embeddings [B,L,d].

    Called like :class:`~recmodels.transformer.TransformerEncoder` (embeddings, valid ->
    hidden, padded rows zero). On CPU, rows are grouped by length and each group is
    trimmed of its left padding (:func:`~recmodels.transformer.encode_by_length`), so a
    batch of short and long histories pays each group's longest row, not ``max_len``,
    per row: exact, because padded keys are masked, positions are right-aligned, the
    bias depends only on distances and ``n`` is constant. ``max_groups=1`` (set for
    export traces) runs one group.
    """

    def __init__(
        self,
        dim: int,
        num_blocks: int,
        num_heads: int,
        max_len: int,
        dropout: float,
        attention_dim: int,
        linear_dim: int,
        max_groups: int = 3,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.max_groups = max_groups
        self.pos_emb = nn.Embedding(max_len, dim)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(
            HSTULayer(dim, num_heads, attention_dim, linear_dim, max_len, dropout) for _ in range(num_blocks)
        )
        self.register_buffer(
            "causal_keep", torch.ones(max_len, max_len, dtype=torch.bool).tril(), persistent=False
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.pos_emb.weight)
        for block in self.blocks:
            block.reset_parameters()

    def attention_mask(self, valid: Tensor) -> Tensor:
        """Additive mask [B,L,L] (or [1,L,L] without padding): 0 = attend, else
        :data:`MASKED_SCORE` (later keys and padded keys)."""
        length = valid.shape[1]
        keep = self.causal_keep[:length, :length][None]
        if not bool(valid.all()):
            keep = keep & valid[:, None, :]
        return torch.zeros(keep.shape, device=valid.device).masked_fill_(~keep, MASKED_SCORE)

    def forward(self, item_embeddings: Tensor, valid: Tensor) -> Tensor:
        """item_embeddings [B,L,d], valid [B,L] bool -> hidden [B,L,d], padded rows zero."""
        length = item_embeddings.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"sequence length {length} exceeds max_len {self.max_len}; "
                "truncate histories to the last max_len items"
            )
        x = self.drop(item_embeddings + self.pos_emb.weight[self.max_len - length :])
        return encode_by_length(self._encode, x, valid, self.max_groups)

    def _encode(self, x: Tensor, valid: Tensor) -> Tensor:
        mask = self.attention_mask(valid)
        for block in self.blocks:
            x = block(x, mask)
        return x.masked_fill(~valid[..., None], 0.0)
