"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained as a cloze task.

Training hides some history items behind a [MASK] token and predicts them from both
sides; recommendation appends [MASK] after the history and scores that position.

Histories use ``-1`` for padding and :data:`MASK` (``-2``) for the mask token (the
training collate writes ``-2`` at masked positions). The item table has two extra rows:
``num_items`` (padding, all zero) and ``num_items + 1`` ([MASK]). Output scores are the
dot product with the same item vectors plus an optional per-item bias.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from recmodels.base import Context, Recommender
from recmodels.feature_tensors import FeatureTensors
from recmodels.item_encoder import ItemEncoder
from recmodels.item_table import SharedItemTable
from recmodels.sasrec import _check_encoder
from recmodels.transformer import TransformerEncoder, embedding_scale, init_weights

MASK = -2  # history value meaning "[MASK] token here"


class BERT4Rec(SharedItemTable, Recommender):
    """Bidirectional transformer recommender; histories are left-padded with -1."""

    def __init__(
        self,
        num_items: int,
        hidden: int = 64,
        num_blocks: int = 2,
        num_heads: int = 2,
        max_len: int = 200,
        dropout: float = 0.1,
        pre_ln: bool = False,
        output_bias: bool = True,
        item_encoder: ItemEncoder | None = None,
        scale_embeddings: bool = False,
        attn_dropout: float = 0.0,
        ffn_mult: int = 4,
        item_features: FeatureTensors | None = None,
        fusion: str = "sum",
    ) -> None:
        super().__init__()
        self.num_items = num_items
        self.hidden = hidden
        self.max_len = max_len
        self.pad_row = num_items
        self.mask_row = num_items + 1
        self.scale = embedding_scale(hidden, scale_embeddings)
        if item_features is not None:  # side features: item vectors from an ItemEncoder
            if item_encoder is not None:
                raise ValueError("pass item_encoder or item_features, not both")
            item_encoder = item_features.encoder(hidden, fusion)
        if item_encoder is not None:
            _check_encoder(item_encoder, num_items, hidden)
            self.item_encoder: ItemEncoder | None = item_encoder
            self.item_emb = None
            self.mask_emb = nn.Parameter(torch.zeros(hidden))
        else:
            self.item_encoder = None
            self.item_emb = nn.Embedding(num_items + 2, hidden, padding_idx=self.pad_row)
            self.mask_emb = None
        self.output_bias = nn.Parameter(torch.zeros(num_items)) if output_bias else None
        self.encoder = TransformerEncoder(
            hidden,
            num_blocks,
            num_heads,
            max_len,
            dropout,
            attn_dropout,
            pre_ln,
            causal=False,
            ffn_mult=ffn_mult,
            activation="gelu",
        )
        init_weights(self)
        if self.mask_emb is not None:
            nn.init.normal_(self.mask_emb, std=0.02)

    # ----- item side -----
    def _input_embeddings(self, history: Tensor) -> Tensor:
        is_mask = history == MASK
        if self.item_encoder is not None:
            x = self.item_encoder(history.clamp_min(0))
            x = x.masked_fill((history < 0)[..., None], 0.0)
            x = torch.where(is_mask[..., None], self.mask_emb.to(x.dtype), x)
        else:
            rows = torch.where(is_mask, self.mask_row, self.pad_row)
            x = self.item_emb(torch.where(history >= 0, history, rows))
        return x * self.scale if self.scale != 1.0 else x

    # ----- encoder -----
    def forward(self, history: Tensor) -> Tensor:
        """history [B,L] (-1 pad, -2 mask) -> hidden [B,min(L,max_len),d]; pad rows zero."""
        history = history[:, -self.max_len :]
        return self.encoder(self._input_embeddings(history), history != -1)

    def _append_mask(self, history: Tensor) -> Tensor:
        """History + a trailing [MASK], dropping the oldest position if at max_len."""
        mask = torch.full_like(history[:, :1], MASK)
        return torch.cat([history, mask], dim=1)[:, -self.max_len :]

    # ----- Recommender API -----
    def user_representation(self, context: Context) -> Tensor:
        return self(self._append_mask(context["history"]))[:, -1]

    def score_all(self, context: Context) -> Tensor:
        scores = self.user_representation(context) @ self.item_table().T
        return scores + self.output_bias if self.output_bias is not None else scores

    def score_candidates(self, context: Context, candidates: Tensor) -> Tensor:
        user = self.user_representation(context)
        scores = torch.einsum("bd,bcd->bc", user, self.item_embeddings(candidates))
        return scores + self.output_bias[candidates] if self.output_bias is not None else scores

    # ----- incremental updates -----
    def grow(self, num_items: int) -> dict[str, Tensor]:
        """Room for ``num_items`` items: real rows keep their index, padding and [MASK]
        move to the new end, new item rows are drawn like a fresh model's (bias 0)."""
        from recmodels.growth import (
            check_growth, fresh_normal, grown_embedding, grown_parameter, old_row_positions, refuse_encoder,
        )

        refuse_encoder(self)
        check_growth("item", self.num_items, num_items)
        rows = old_row_positions(self.num_items, num_items, num_special=2)
        self.item_emb = grown_embedding(self.item_emb, num_items + 2, rows, fresh_normal)
        moved = {"item_emb.weight": rows}
        if self.output_bias is not None:
            items = torch.arange(self.num_items)
            self.output_bias = grown_parameter(self.output_bias, num_items, items, nn.init.zeros_)
            moved["output_bias"] = items
        self.num_items, self.pad_row, self.mask_row = num_items, num_items, num_items + 1
        return moved
